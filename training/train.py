"""``vpprl-train``: train a dispatch policy, log it to TensorBoard, checkpoint it, evaluate it.

    vpprl-train                                   # RLlib multi-agent PPO, shield on, default scenario
    vpprl-train agent=sb3_ppo task=peak_shaving
    vpprl-train -m agent.lr=1e-4,3e-4 seed=0,1,2  # a local sweep (Hydra multirun)

The whole path on one screen: build the env (shield in the loop) -> the algorithm -> train for
``iterations`` -> log return, throughput and, every ``log_every`` iterations, the KPIs and a dispatch
plot of a deterministic episode -> checkpoint -> evaluate the trained policy (behind the same shield)
beside the rule-based baselines and the oracle on held-out days, writing the KPI table next to the
checkpoint and to TensorBoard.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from ..agents.oracle import Mpc, Oracle
from ..agents.policy import Policy
from ..agents.rule_based import RuleBased
from ..deployment.shield import Shield, ShieldConfig
from ..deployment.shielded_policy import ShieldedPolicy
from ..envs.fleet_config import FleetConfig
from ..envs.vpp_env import VppEnv
from .checkpoints import RUN_CONFIG, check_observation_schema, write_run_config
from .cli import check_known_keys, user_errors
from .config import YARDSTICKS, TrainConfig
from .evaluation import EvaluateConfig, rollout
from .progress import bar, logs_above

ConfigStore.instance().store(name="train_schema", node=TrainConfig)
log = logging.getLogger("vpprl.train")

LOGGED_KPIS = ("energy_cost", "energy_cost_adjusted", "peak_kw", "load_factor", "ramping_kw", "emissions_kg",
               "discomfort_degh", "dhw_discomfort_degh", "ev_unmet_kwh", "battery_reserve_kwh_h",
               "site_limit_kwh", "power_limit_kwh", "terminal_value")


class Trainer:
    """One algorithm behind a three-call interface: ``step()``, ``policy()``, ``save(path)``.
    Yardstick agents (rule_based, oracle, mpc) have nothing to learn: ``learns`` is False."""

    def __init__(self, cfg: TrainConfig, shield: Shield | None) -> None:
        self.cfg = cfg
        self.learns = cfg.agent.name not in YARDSTICKS
        if not self.learns:
            return
        if cfg.agent.name == "rllib_ppo":
            from . import rllib_adapter as rl

            self._rl = rl
            self.algo = rl.build_algorithm(cfg, shield)
        else:
            from . import sb3_adapter as sb3

            self._sb3 = sb3
            self.model = sb3.build_model(cfg, sb3.make_training_env(cfg, shield))

    def step(self) -> dict[str, float]:
        if self.cfg.agent.name == "rllib_ppo":
            return self._rl.train_iteration(self.algo, self.cfg)
        return self._sb3.train_iteration(self.model, self.cfg)

    def progress(self) -> tuple[int, float]:
        """(iterations, home-steps) done so far: both 0 for a fresh run, the checkpoint's on ``resume_from``."""
        if not self.learns:
            return 0, 0.0
        if self.cfg.agent.name == "rllib_ppo":
            return self._rl.progress(self.algo, self.cfg)
        steps = int(self.model.num_timesteps)
        return steps // self.cfg.agent.train_batch_size, float(steps) * self.cfg.fleet.num_homes

    def policy(self) -> Policy:
        a = self.cfg.agent
        if a.name == "rule_based":
            return RuleBased(a.rules)
        if a.name == "oracle":
            return Oracle()
        if a.name == "mpc":
            return Mpc(horizon_h=a.mpc.horizon_h, replan_every_h=a.mpc.replan_every_h)
        if self.cfg.agent.name == "rllib_ppo":
            return self._rl.RllibPolicy(module=self.algo.get_module(self._rl.module_id(self.cfg)))
        return self._sb3.Sb3Policy(model=self.model, algorithm=self.cfg.agent.name)

    def save(self, path: Path) -> Path:
        if not self.learns:  # a yardstick's "checkpoint" is its settings
            path.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(OmegaConf.structured(self.cfg.agent), path / "agent.yaml")
            return path
        if self.cfg.agent.name == "rllib_ppo":
            return self._rl.save(self.algo, path)
        return self._sb3.save(self.model, path)


#: the final evaluation runs on other homes than training (the same fleet distribution, another draw)
HELD_OUT_FLEET_SEED_OFFSET = 1000


def held_out_fleet(fleet: FleetConfig) -> FleetConfig:
    """The training fleet's distribution with other homes: a held-out fleet."""
    return dataclasses.replace(fleet, seed=(fleet.seed + HELD_OUT_FLEET_SEED_OFFSET) % 2**32)


def _eval_config(cfg: TrainConfig, out: Path, policies: list[str], seeds: list[int], days) -> EvaluateConfig:
    fleet = held_out_fleet(cfg.fleet) if cfg.days == "train" else cfg.fleet
    return EvaluateConfig(task=cfg.task, fleet=fleet, num_homes=cfg.fleet.num_homes, seeds=seeds,
                          start_days=days, episode_hours=cfg.episode_hours, dt_s=cfg.dt_s, dataset=cfg.dataset,
                          citylearn_replicate=bool(cfg.dataset), policies=policies, output_dir=str(out),
                          days=cfg.eval_days, task_params=cfg.task_params, program=cfg.program)


def check_startup(cfg: TrainConfig) -> VppEnv:
    """Everything a run can get wrong that needs the data (dataset, start days), checked before RLlib or SB3
    start; returns the probe env (the same scenario as training) for the periodic KPI episodes."""
    if cfg.agent.num_gpus_per_learner and cfg.agent.name == "rllib_ppo":
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"agent.num_gpus_per_learner={cfg.agent.num_gpus_per_learner:g} needs a CUDA device, "
                             "and torch sees none: use 0 (learn on the CPU)")
    VppEnv(**cfg.env_kwargs())  # the training scenario: some training day fits
    held_out = VppEnv(**cfg.env_kwargs(days=cfg.eval_days))
    for day in cfg.eval_start_days or []:
        held_out.check_start_day("eval_start_days", day)
    # the periodic probe episodes run on a training day, scored as evaluated: choosing a checkpoint by them never
    # looks at the held-out days
    probe_env = VppEnv(**cfg.env_kwargs(days="train" if cfg.days == "train" else "all"))
    if cfg.evaluate:  # the final evaluation's settings, checked now rather than after the training
        _eval_config(cfg, Path(cfg.output_dir), [p for p in cfg.eval_policies if p != cfg.agent.name],
                     list(cfg.eval_seeds), cfg.eval_start_days)
    if cfg.resume_from:
        check_resumable(cfg)
    return probe_env


#: settings a checkpoint's weights depend on: resuming with others would load nothing or fail mid-way
RESUME_KEYS = ("agent.name", "agent.home_batch", "agent.hidden", "agent.action_distribution", "task", "dt_s",
               "dataset", "agent.fleets_in_one_pass", "agent.num_envs_per_env_runner")  # the last two: home-steps per
# RLlib env step (fleets in one pass), which the restored step counter is converted with


def check_resumable(cfg: TrainConfig) -> None:
    """ValueError naming every setting that differs from the run that wrote ``resume_from``."""
    saved_path = Path(cfg.resume_from) / RUN_CONFIG
    if not saved_path.exists():
        raise FileNotFoundError(f"resume_from: {saved_path} is missing: the checkpoint was not written by "
                                f"vpprl-train (or by an older version), so its settings cannot be checked")
    saved = OmegaConf.load(saved_path)
    check_observation_schema("resume_from", OmegaConf.to_container(saved), cfg.resume_from)
    mine = OmegaConf.structured(cfg)
    keys = RESUME_KEYS + (("fleet.num_homes",) if cfg.agent.name.startswith("sb3") else ())
    defaults = OmegaConf.structured(TrainConfig)  # a key the checkpoint's version did not have: its default then
    was = {k: OmegaConf.select(saved, k, default=OmegaConf.select(defaults, k)) for k in keys}
    differ = [f"{k}: checkpoint {was[k]!r}, now {OmegaConf.select(mine, k)!r}" for k in keys
              if was[k] != OmegaConf.select(mine, k)]
    if differ:
        raise ValueError("resume_from: the checkpoint was trained with other settings; use the same values "
                         "(" + "; ".join(differ) + ")")


def train(cfg: TrainConfig, probe_env: VppEnv | None = None) -> dict:
    """Run the whole path; returns the final evaluation summary and the checkpoint path."""
    probe_env = probe_env or check_startup(cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    shield = Shield(ShieldConfig(feeder_limit_kw=cfg.shield.feeder_limit_kw)) if cfg.shield.enabled else None
    writer = None
    if cfg.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tensorboard"))
    trainer = Trainer(cfg, shield)
    probe_days = [int(probe_env.start_days[len(probe_env.start_days) // 3])]  # a spring training day
    budget = cfg.training
    first_it, last_steps = trainer.progress()  # (0, 0) unless resumed: the counters continue from the checkpoint
    if cfg.resume_from:
        log.info("resumed from %s at iteration %d (%s home-steps)", cfg.resume_from, first_it, f"{last_steps:,.0f}")
        if trainer.learns and first_it >= budget.iterations:
            log.info("nothing left to train: training.iterations=%d is the total; raise it to train on",
                     budget.iterations)
    t_start = last_t = time.perf_counter()
    last_it = first_it
    timed = budget.time_budget_s is not None
    progress = bar((budget.time_budget_s if timed else budget.iterations) if trainer.learns else 0, "train",
                   unit="s" if timed else "it",
                   initial=0 if timed else min(first_it, budget.iterations))
    with logs_above(progress):
        for it in range(first_it + 1, (budget.iterations if trainer.learns else 0) + 1):
            metrics = trainer.step()
            last_it = it
            now = time.perf_counter()
            home_steps = metrics["home_steps"]
            rate = (home_steps - last_steps) / max(now - last_t, 1e-9)
            progress.update(min(now - t_start, budget.time_budget_s) - progress.n if timed else 1)
            progress.set_postfix(it=it, ret=f"{metrics['episode_return']:.3f}", hs_per_s=f"{rate:,.0f}",
                                 refresh=False)
            last_steps, last_t = home_steps, now
            out_of_time = timed and now - t_start >= budget.time_budget_s
            final = it == budget.iterations or out_of_time
            log.info("[%d/%d] return %10.3f  home-steps %12s  %9s home-steps/s  %7.1f s", it, budget.iterations,
                     metrics["episode_return"], f"{home_steps:,.0f}", f"{rate:,.0f}", now - t_start)
            if writer:
                writer.add_scalar("charts/episode_return", metrics["episode_return"], it)
                writer.add_scalar("perf/home_steps_per_s", rate, it)
                for key, value in metrics.items():
                    if key.startswith("losses/"):
                        writer.add_scalar(key, value, it)
            if budget.checkpoint_every and it % budget.checkpoint_every == 0 and not final:
                _save(trainer, cfg, out / "checkpoints" / f"iter_{it:06d}")
            if writer and (it % budget.log_every == 0 or final):
                _probe_episode(writer, trainer, shield, probe_env, cfg.eval_seeds[0], probe_days[0], out, it)
            if out_of_time:
                log.info("time budget of %g s reached after %d iterations", budget.time_budget_s, it)
                break
    train_s = time.perf_counter() - t_start
    checkpoint = _save(trainer, cfg, out / "checkpoint")
    summary: list[dict] = []
    if cfg.evaluate:
        from .evaluate import run as run_evaluation

        learned = ShieldedPolicy(trainer.policy(), shield) if shield else trainer.policy()
        others = [p for p in cfg.eval_policies if p != cfg.agent.name]
        eval_cfg = _eval_config(cfg, out / "evaluation", others, list(cfg.eval_seeds), cfg.eval_start_days)
        text, summary = run_evaluation(eval_cfg, extra={cfg.agent.name: learned})
        log.info("%s", text)
        if writer:
            for s in summary:
                for key, value in s.items():
                    if isinstance(value, float) and value == value:
                        writer.add_scalar(f"eval/{s['policy']}/{key}", value, last_it)
    if writer:
        _log_hparams(writer, cfg, summary, last_it)
        writer.close()
    log.info("checkpoint:  %s", checkpoint)
    if cfg.evaluate:
        log.info("evaluation:  %s (kpis.md, kpis.csv, kpis_summary.csv, plots/)", out / "evaluation")
    if writer:
        log.info("tensorboard: tensorboard --logdir %s", out / "tensorboard")
    return {"checkpoint": str(checkpoint), "summary": summary, "iterations": last_it, "train_s": train_s,
            "home_steps": last_steps}


def _save(trainer: Trainer, cfg: TrainConfig, path: Path) -> Path:
    """The trainer's checkpoint plus the run's settings beside it (``resume_from`` checks them)."""
    checkpoint = trainer.save(path)
    write_run_config(cfg, checkpoint)
    return checkpoint


def _probe_episode(writer, trainer: Trainer, shield: Shield | None, env: VppEnv, seed: int, day: int, out: Path,
                   it: int) -> None:
    """KPIs, shield interventions and dispatch plots of one deterministic episode, to TensorBoard."""
    policy = ShieldedPolicy(trainer.policy(), shield) if shield else trainer.policy()
    row, trace = rollout(env, policy, seed=seed, start_day=day)
    for key in LOGGED_KPIS:
        writer.add_scalar(f"kpis/{key}", row[key], it)
    writer.add_scalar("kpis/return", row["return"], it)
    for key, value in getattr(policy, "interventions", {}).items():  # shield/<device>/interventions ...
        writer.add_scalar(key, value, it)
    log.info("    probe episode (deterministic, day %d): return %.2f  energy cost %.2f  peak %.1f kW  discomfort "
             "%.2f degh  EV unmet %.2f kWh", day, row["return"], row["energy_cost"], row["peak_kw"],
             row["discomfort_degh"], row["ev_unmet_kwh"])
    _log_dispatch(writer, {"learned": trace}, out, it)


def _log_hparams(writer, cfg: TrainConfig, summary: list[dict], iterations: int) -> None:
    """HParams in the run's own TensorBoard event file (``SummaryWriter.add_hparams`` would open a second
    run in a sub-folder, so the HParams tab and the scalars would not line up)."""
    from torch.utils.tensorboard.summary import hparams as hparams_summaries

    mine = next((s for s in summary if s["policy"] == cfg.agent.name), {})
    a = cfg.agent
    params = {"agent": a.name, "lr": a.lr, "gamma": a.gamma, "gae_lambda": a.gae_lambda, "seed": cfg.seed,
              "task": cfg.task, "homes": cfg.fleet.num_homes, "shield": cfg.shield.enabled,
              "hidden": "x".join(map(str, a.hidden)), "train_batch_size": a.train_batch_size,
              "minibatch_size": a.minibatch_size, "num_epochs": a.num_epochs,
              "entropy_coeff": a.entropy_coeff, "home_batch": a.home_batch, "iterations": iterations,
              "initial_log_std": a.initial_log_std, "action_distribution": a.action_distribution,
              "lr_final": a.lr if a.lr_final is None else a.lr_final,
              **{f"initial_log_std_{k}": v for k, v in sorted(a.initial_log_std_by_class.items())},
              "storage_potential": a.storage_potential, "fleets_per_env": cfg.fleets_per_env}
    metrics = {f"hparam/{k}": float(mine[k]) for k in ("return", "oracle_savings_captured")
               if k in mine and mine[k] == mine[k]} or {"hparam/return": float("nan")}
    for summary_proto in hparams_summaries(params, metrics):
        writer.file_writer.add_summary(summary_proto)
    for key, value in metrics.items():
        writer.add_scalar(key, value, iterations)


def _log_dispatch(writer, traces: dict, out: Path, step: int) -> None:
    import matplotlib.image as mpimg

    from .plots import dispatch_figures

    paths = dispatch_figures(traces, out / "plots" / f"iter_{step:05d}", "learned policy")
    for png in paths:
        writer.add_image(f"dispatch/{png.stem}", mpimg.imread(png)[..., :3], step, dataformats="HWC")


@hydra.main(config_path="pkg://vpprl.configs.train", config_name="train", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    with user_errors("vpprl-train"):
        check_known_keys(cfg, TrainConfig)
        obj: TrainConfig = OmegaConf.to_object(cfg)  # runs every schema's validation
        probe_env = check_startup(obj)
    if obj.output_dir == ".":
        obj.output_dir = hydra.core.hydra_config.HydraConfig.get().runtime.output_dir
    train(obj, probe_env)


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
