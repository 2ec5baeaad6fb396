"""All RLlib glue in one place: multi-agent PPO with one policy shared by every home (new API stack),
checkpoints, and a :class:`Policy` that serves a checkpoint's module on any fleet size.

Two ways to feed RLlib the same shared-parameter problem: ``home_batch`` (default) hands it the
fleet as one env whose rows are homes (``rllib_home_batch``: one RLlib env step per fleet step);
the reference path hands it ``VppMultiAgentEnv`` (one RLlib agent step per home step; 3.5x slower at
20 homes, 6x at 500, measured by ``benchmarks/train_throughput.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..agents.policy import Policy
from .config import TrainConfig

MODULE_ID = "shared"  # the per-agent path's module; the home-batch path uses RLlib's DEFAULT_MODULE_ID


def _policy_mapping(agent_id: str, *args: Any, **kwargs: Any) -> str:
    return MODULE_ID


def module_id(cfg: TrainConfig) -> str:
    from ray.rllib.core import DEFAULT_MODULE_ID

    return DEFAULT_MODULE_ID if cfg.agent.home_batch else MODULE_ID


def env_config_for(cfg: TrainConfig, shield: Any = None) -> dict:
    """The ``env_config`` RLlib hands each env runner's ``VppHomeBatchEnv`` / ``VppMultiAgentEnv``."""
    config = {**cfg.env_kwargs(), "shield": shield}
    if shield is not None:
        config["shield_penalty_per_kwh"] = cfg.shield.penalty_per_kwh
    return config


def build_algorithm(cfg: TrainConfig, shield: Any = None):
    """A PPO Algorithm with one module shared by every home: on ``VppHomeBatchEnv`` (``agent.home_batch``)
    or on ``VppMultiAgentEnv`` (one agent per home, all mapped to one module)."""
    import logging

    import ray
    import torch
    from ray.rllib.algorithms.ppo import PPOConfig

    from .cli import quiet_ray

    quiet_ray()
    if not ray.is_initialized():
        ray.init(address=cfg.ray_address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                 **({} if cfg.ray_address else {"num_cpus": max(2, cfg.agent.num_env_runners + 1)}))
    torch.manual_seed(cfg.seed)
    a = cfg.agent
    env_config = env_config_for(cfg, shield)
    fleets = cfg.fleets_per_env
    n = cfg.fleet.num_homes * fleets  # homes per env step
    config = (PPOConfig().env_runners(num_env_runners=a.num_env_runners).debugging(seed=cfg.seed)
              .learners(num_gpus_per_learner=a.num_gpus_per_learner))
    common = {"num_epochs": a.num_epochs, "lr": learning_rate(cfg), "gamma": a.gamma, "lambda_": a.gae_lambda,
              "entropy_coeff": a.entropy_coeff, "clip_param": a.clip_param, "vf_clip_param": a.vf_clip_param,
              "grad_clip": a.grad_clip}
    if a.home_batch:
        from ray.rllib.core.rl_module.rl_module import RLModuleSpec

        from ..envs.home_batch import VppHomeBatchEnv
        from .rllib_home_batch import HomeBatchPPOLearner, SharedHomeModule

        fleet_steps = max(1, a.train_batch_size // n)  # RLlib counts fleet steps; the learner, home-steps
        # the env runner's fleets as one env simulating them in one pass, or as separate envs
        config = (config.environment(VppHomeBatchEnv, env_config={**env_config, "resample_fleet": a.resample_fleet,
                                                                  "fleets": fleets})
                  .env_runners(num_envs_per_env_runner=a.num_envs_per_env_runner // fleets)
                  .rl_module(rl_module_spec=RLModuleSpec(module_class=SharedHomeModule, model_config={
                      "hidden": list(a.hidden), "activation": "tanh", "initial_log_std": a.initial_log_std,
                      "initial_log_std_by_class": dict(a.initial_log_std_by_class),
                      "action_distribution": a.action_distribution}))
                  .learners(learner_class=HomeBatchPPOLearner)
                  .training(train_batch_size_per_learner=fleet_steps,
                            minibatch_size=min(fleet_steps, max(1, a.minibatch_size // n)), **common))
    else:
        from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

        from ..envs.multi_agent import VppMultiAgentEnv

        config = (config.environment(VppMultiAgentEnv, env_config=env_config)
                  .multi_agent(policies={MODULE_ID}, policy_mapping_fn=_policy_mapping, count_steps_by="agent_steps")
                  .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=list(a.hidden), fcnet_activation="tanh"))
                  .training(train_batch_size_per_learner=a.train_batch_size,
                            minibatch_size=min(a.minibatch_size, a.train_batch_size), **common))
    algo = config.build_algo()
    log = logging.getLogger("vpprl.train")
    if fleets > 1:
        log.info("%d fleets of %d homes per env, simulated in one pass (agent.fleets_in_one_pass=%s)", fleets,
                 cfg.fleet.num_homes, a.fleets_in_one_pass)
    elif a.home_batch and a.num_envs_per_env_runner > 1 and cfg.one_pass_obstacle():
        log.info("%d fleets per env runner as separate envs: %s", a.num_envs_per_env_runner, cfg.one_pass_obstacle())
    if a.num_env_runners:
        nodes = env_runner_nodes(algo)
        logging.getLogger("vpprl.train").info("%d env runners on %d Ray node(s): %s", len(nodes), len(set(nodes)),
                                              ", ".join(sorted(set(nodes))))
    if cfg.resume_from:
        algo.restore_from_path(str(Path(cfg.resume_from).resolve()))
    return algo


def learning_rate(cfg: TrainConfig) -> float | list[list[float]]:
    """``agent.lr``, or with ``agent.lr_final`` RLlib's piecewise-linear schedule from ``lr`` at the first step to
    ``lr_final`` after ``training.iterations`` iterations. RLlib's clock is env steps sampled: with home batches
    one env step is every home of the env's fleets at once (train_batch_size / homes per env step)."""
    a = cfg.agent
    if a.lr_final is None:
        return a.lr
    env_steps = max(1, a.train_batch_size // (cfg.fleet.num_homes * cfg.fleets_per_env)) * cfg.training.iterations
    return [[0, a.lr], [env_steps, a.lr_final]]


def env_runner_nodes(algo) -> list[str]:
    """The Ray node id of every remote env runner (where RLlib placed them on the cluster)."""
    import ray

    return algo.env_runner_group.foreach_env_runner(lambda runner: ray.get_runtime_context().get_node_id(),
                                                    local_env_runner=False)


def train_iteration(algo, cfg: TrainConfig) -> dict[str, float]:
    """One PPO iteration; ``home_steps`` counts every home's step (the unit of the throughput target)."""
    result = algo.train()
    runners = result.get("env_runners", {})
    n = cfg.fleet.num_homes * cfg.fleets_per_env  # homes per env step
    fleet_steps = float(runners.get("num_env_steps_sampled_lifetime", 0.0) or 0.0)
    metrics = {"episode_return": float(runners.get("episode_return_mean", np.nan)), "home_steps": fleet_steps * n}
    if not cfg.agent.home_batch:  # RLlib sums the per-agent rewards: report the fleet mean like the env does
        metrics["episode_return"] /= n
    learner = result.get("learners", {}).get(module_id(cfg), {})
    for key, value in learner.items():  # entropy, learning rate, losses, KL for TensorBoard
        if isinstance(value, (int, float, np.floating)) and any(
                s in key for s in ("entropy", "learning_rate", "policy_loss", "vf_loss", "mean_kl")):
            metrics[f"losses/{key}"] = float(value)
    return metrics


def progress(algo, cfg: TrainConfig) -> tuple[int, float]:
    """(iterations, home-steps) the algorithm has done, restored ones included."""
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

    fleet_steps = algo.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0.0)
    return int(algo.iteration), float(fleet_steps or 0.0) * cfg.fleet.num_homes * cfg.fleets_per_env


def save(algo, path: Path) -> Path:
    return Path(algo.save(str(path.resolve())).checkpoint.path)


class RllibPolicy(Policy):
    """The shared module of a checkpoint, acting deterministically (the Gaussian's mean) on every
    home's observation row at once; works on any fleet size (a per-home policy with global context).

    Acts on the observation alone: ``VppEnv``'s flat vector (N x F home features, then the G global ones)
    or per-home rows (N, F + G) as the multi-agent and home-batch views give them. No env is read, so it
    works the same on ``gym.make`` envs, wrapped envs and telemetry assembled elsewhere."""

    name = "rllib_ppo"

    def __init__(self, checkpoint: str | Path | None = None, module: Any = None) -> None:
        import torch

        self._torch = torch
        if module is None:
            from ray.rllib.core.rl_module.rl_module import RLModule

            modules = Path(checkpoint) / "learner_group" / "learner" / "rl_module"
            found = [p for p in sorted(modules.glob("*")) if p.is_dir()]
            if len(found) != 1:
                raise ValueError(f"expected one RLModule under {modules}, found {[p.name for p in found]}")
            module = RLModule.from_checkpoint(str(found[0].resolve()))
        self.module = module
        # the same deterministic action the ONNX export traces (one implementation of clip / tanh)
        from ..deployment.torch_actors import RllibActor

        self._actor = RllibActor(module)

    def act(self, obs: np.ndarray) -> np.ndarray:
        rows = home_rows(np.asarray(obs, dtype=np.float32), int(self.module.observation_space.shape[-1]))
        with self._torch.no_grad():
            return self._actor(self._torch.as_tensor(rows)).numpy().astype(np.float32).ravel()


def home_rows(obs: np.ndarray, width: int) -> np.ndarray:
    """Per-home rows (N, F + G) from a centralized observation (N * F + G,), or rows passed through."""
    from ..envs.observation import HOME_FEATURES

    if obs.ndim == 2 and obs.shape[1] == width:
        return obs
    f = len(HOME_FEATURES)
    g = width - f
    n, rest = divmod(obs.size - g, f)
    if obs.ndim != 1 or rest or n < 1:
        raise ValueError(f"observation of shape {obs.shape} is neither per-home rows (N, {width}) nor a centralized "
                         f"vector of N x {f} home features + {g} global features")
    rows = np.empty((n, width), dtype=np.float32)
    rows[:, :f] = obs[: n * f].reshape(n, f)
    rows[:, f:] = obs[n * f:]
    return rows
