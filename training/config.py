"""Structured (dataclass) schemas of ``vpprl-train``; validated when Hydra's config becomes these objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..agents.rule_based import RuleConfig
from ..deployment.wrappers import MAX_PENALTY_PER_KWH
from ..envs.devices import DEVICE_CLASSES
from ..envs.fleet_config import FleetConfig
from ..envs.programs import task_params_under
from ..envs.tasks import TASKS
from ..envs.tasks.base import check_ranges
from ..envs.terminal import STORAGE_POTENTIALS
from ..envs.vpp_env import scenario_from_kwargs
from .evaluation import MpcConfig, check_policy_names, check_seed, task_dict

LEARNERS = ("rllib_ppo", "sb3_ppo", "sb3_sac")
CHECKPOINT_MARKERS = {"rllib_ppo": "rllib_checkpoint.json", "sb3_ppo": "model.zip", "sb3_sac": "model.zip"}
YARDSTICKS = ("rule_based", "oracle", "mpc")  # nothing to train: ``vpprl-train agent=oracle`` only evaluates
AGENTS = LEARNERS + YARDSTICKS
ACTION_DISTRIBUTIONS = ("gaussian", "squashed_gaussian")
FLEETS_IN_ONE_PASS = ("auto", "on", "off")


@dataclass
class AgentConfig:
    """Learning algorithm and its hyper-parameters.

    :param name: rllib_ppo (multi-agent, one policy shared by all homes), sb3_ppo or sb3_sac (centralized),
        or a yardstick with nothing to learn (rule_based, oracle, mpc: evaluated like a trained policy, so one
        sweep over ``agent=`` compares them all).
    :param train_batch_size: RLlib: home-steps per iteration (rounded down to whole fleet steps);
        SB3 (centralized): env steps per iteration (n_steps).
    :param minibatch_size: RLlib: home-step rows per SGD minibatch; SB3: env steps.
    :param home_batch: RLlib only: hand RLlib the fleet as one env whose rows are homes (fast) instead of
        one agent per home (the reference MultiAgentEnv path); the same learning problem either way.
    :param initial_log_std: RLlib home-batch module: the Gaussian's starting log-std (exploration).
    :param initial_log_std_by_class: RLlib home-batch module: the starting log-std of the device classes named
        (``envs.devices.DEVICE_CLASSES``), instead of ``initial_log_std``: e.g. less noise for the battery and
        the EV, as much for the thermal devices, which need it (README: helps at 300 iterations, not in the
        20-minute run; not the default).
    :param num_envs_per_env_runner: RLlib home-batch: fleets stepped side by side per env runner (more
        home rows per forward pass for a small fleet).
    :param fleets_in_one_pass: RLlib home-batch: simulate an env runner's fleets in one vectorized env, each
        with its own clock and homes (``VppHomeBatchEnv(fleets=K)``: a small fleet's step is mostly fixed numpy
        overhead, paid once instead of once per fleet), instead of as separate envs. The same learning problem
        either way (tests/test_fleets_in_one_pass.py). "auto": when the task supports it (price arbitrage,
        peak shaving), the fleets are small (``num_homes * num_envs_per_env_runner <= minibatch_size / 4``: RLlib
        minibatches whole env steps, so a minibatch keeps several)
        and the shield has no feeder limit; "on": required (start-up error otherwise); "off": separate envs.
    :param resample_fleet: RLlib home-batch: a fresh fleet of the same configuration every episode.
    :param action_distribution: RLlib home-batch: "gaussian" (a diagonal Gaussian whose samples the env clips
        to [-1, 1]) or "squashed_gaussian" (tanh-squashed into [-1, 1]: no mass piled on the bounds, and the
        deterministic action is tanh(mean)).
    :param storage_potential: how the training env's shaping values stored energy (``ScenarioConfig``):
        "terminal_price" or "highest_price_ahead" (potential-based: same optimal policy, earlier credit for
        storing before a price peak). Evaluation always scores the unshaped problem.
    :param lr_final: anneal the learning rate linearly from ``lr`` to this over ``training.iterations``
        (null: constant ``lr``): large steps early, small ones to settle the policy at the end. RLlib: a line
        on its env-step clock; SB3: one rate per iteration, ``lr`` in the first, ``lr_final`` in the last (its
        configs set null: the baselines were measured at a constant rate). The schedule counts iterations, not
        time: a run that a time budget ends early stops part-way down it.
    :param num_gpus_per_learner: RLlib: GPUs for the learner (0: learn on the CPU; 1 with a CUDA device
        present: the SGD passes run on it while the env runners sample on the CPUs).
    """

    name: str = "rllib_ppo"
    lr: float = 1e-3  # RLlib PPO's measured default (benchmarks in the README); the SB3 configs set 3e-4
    lr_final: float | None = 1e-4  # 3 seeds, see README: every seed at or above its constant-lr twin
    gamma: float = 0.99
    gae_lambda: float = 0.95
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    train_batch_size: int = 30720
    minibatch_size: int = 4096
    num_epochs: int = 4
    num_env_runners: int = 0
    entropy_coeff: float = 0.0
    clip_param: float = 0.2
    vf_clip_param: float = 10.0
    grad_clip: float | None = 0.5
    home_batch: bool = True
    initial_log_std: float = -0.5
    initial_log_std_by_class: dict[str, float] = field(default_factory=dict)
    num_envs_per_env_runner: int = 16
    fleets_in_one_pass: str = "auto"
    resample_fleet: bool = True
    action_distribution: str = "gaussian"
    storage_potential: str = "highest_price_ahead"
    num_gpus_per_learner: float = 0.0
    rules: RuleConfig = field(default_factory=RuleConfig)
    mpc: MpcConfig = field(default_factory=MpcConfig)

    def __post_init__(self) -> None:
        if self.name not in AGENTS:
            raise ValueError(f"AgentConfig.name must be one of {list(AGENTS)}, got {self.name!r}")
        if self.lr_final is not None:
            check_ranges("AgentConfig", lr_final=(self.lr_final, 1e-8, 1.0))
        check_ranges("AgentConfig", lr=(self.lr, 1e-7, 1.0), gamma=(self.gamma, 0.0, 1.0),
                     gae_lambda=(self.gae_lambda, 0.0, 1.0), clip_param=(self.clip_param, 1e-3, 10.0),
                     vf_clip_param=(self.vf_clip_param, 1e-3, 1e9), initial_log_std=(self.initial_log_std, -10, 2),
                     train_batch_size=(self.train_batch_size, 8, 10_000_000),
                     minibatch_size=(self.minibatch_size, 1, 10_000_000), num_epochs=(self.num_epochs, 1, 1000),
                     num_env_runners=(self.num_env_runners, 0, 1024),
                     num_envs_per_env_runner=(self.num_envs_per_env_runner, 1, 4096),
                     entropy_coeff=(self.entropy_coeff, 0.0, 1.0),
                     num_gpus_per_learner=(self.num_gpus_per_learner, 0.0, 16.0))
        unknown = sorted(set(self.initial_log_std_by_class) - set(DEVICE_CLASSES))
        if unknown:
            raise ValueError(f"AgentConfig.initial_log_std_by_class: unknown device class(es) {unknown}; allowed: "
                             f"{list(DEVICE_CLASSES)}")
        for name, value in self.initial_log_std_by_class.items():
            check_ranges("AgentConfig", **{f"initial_log_std_by_class.{name}": (value, -10, 2)})
        if self.action_distribution not in ACTION_DISTRIBUTIONS:
            raise ValueError(f"AgentConfig.action_distribution must be one of {list(ACTION_DISTRIBUTIONS)}, "
                             f"got {self.action_distribution!r}")
        if self.fleets_in_one_pass not in FLEETS_IN_ONE_PASS:
            raise ValueError(f"AgentConfig.fleets_in_one_pass must be one of {list(FLEETS_IN_ONE_PASS)}, "
                             f"got {self.fleets_in_one_pass!r}")
        if self.storage_potential not in STORAGE_POTENTIALS:
            raise ValueError(f"AgentConfig.storage_potential must be one of {list(STORAGE_POTENTIALS)}, "
                             f"got {self.storage_potential!r}")
        if self.action_distribution != "gaussian" and not self.home_batch:
            raise ValueError(f"AgentConfig.action_distribution={self.action_distribution} needs home_batch=true "
                             "(the per-agent path uses RLlib's default Gaussian)")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"AgentConfig.grad_clip must be > 0 or null, got {self.grad_clip!r}")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"AgentConfig.hidden must list positive layer widths, got {self.hidden!r}")


@dataclass
class TrainingSettings:
    """The training budget and logging cadence.

    :param iterations: RLlib training iterations / SB3 rollouts of ``agent.train_batch_size`` steps.
    :param time_budget_s: stop after the iteration that crosses this many seconds of training (None: no limit).
    :param log_every: KPIs and a dispatch plot of a deterministic episode every this many iterations.
    :param checkpoint_every: also checkpoint every this many iterations (0: only at the end).
    """

    iterations: int = 300
    time_budget_s: float | None = None
    log_every: int = 25
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        check_ranges("TrainingSettings", iterations=(self.iterations, 1, 10_000_000),
                     log_every=(self.log_every, 1, 10_000_000), checkpoint_every=(self.checkpoint_every, 0, 10_000_000))
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"TrainingSettings.time_budget_s must be > 0 or null, got {self.time_budget_s}")


@dataclass
class ShieldSettings:
    """The safety shield in the training loop (and in evaluation of the trained policy).

    :param feeder_limit_kw: fleet import limit the shield enforces (None: none).
    :param penalty_per_kwh: $ per kWh the shield moves, subtracted from the home's reward in training
        (every path: RLlib home batch, RLlib per-agent, SB3)."""

    enabled: bool = True
    feeder_limit_kw: float | None = None
    penalty_per_kwh: float = 0.0

    def __post_init__(self) -> None:
        check_ranges("shield", penalty_per_kwh=(self.penalty_per_kwh, 0.0, MAX_PENALTY_PER_KWH))
        if self.penalty_per_kwh > 0 and not self.enabled:
            raise ValueError("shield.penalty_per_kwh applies only with the shield on (shield.enabled=true)")
        if self.feeder_limit_kw is not None:
            check_ranges("shield", feeder_limit_kw=(self.feeder_limit_kw, 1e-3, 1e9))


@dataclass
class TrainConfig:
    """One training run: scenario, agent, shield, budget, evaluation.

    :param task: a task name or several joined by '+'.
    :param task_params: keyword parameters per task, e.g. ``{demand_response: {baseline: caiso_10_in_10}}``.
    :param days: the days training episodes start on: ``train`` (default: never a held-out day, see
        ``envs.splits``) or ``all``; the final evaluation then runs on ``held_out`` days (or ``all``).
    :param eval_start_days: held-out days for the final evaluation (episodes start at random days in training).
    :param resume_from: a checkpoint directory written by an earlier run.
    :param ray_address: an existing Ray cluster to join (None: a local Ray instance).
    :param program: a demand-flexibility programme: the DR task's events take its shape and pay its marginal
        revenue per kWh (settlement revenue as the reward); the final evaluation settles under it.
    """

    seed: int = 0
    task: str = "price_arbitrage"
    fleet: FleetConfig = field(default_factory=lambda: FleetConfig(num_homes=20))
    dataset: str | None = None
    dt_s: int = 900
    episode_hours: float = 24.0
    agent: AgentConfig = field(default_factory=AgentConfig)
    shield: ShieldSettings = field(default_factory=ShieldSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    evaluate: bool = True
    eval_policies: list[str] = field(default_factory=lambda: ["no_control", "rule_based", "oracle"])
    eval_seeds: list[int] = field(default_factory=lambda: [100, 101, 102])
    eval_start_days: list[int] | None = field(default_factory=lambda: [30, 100, 205])
    days: str = "train"
    task_params: dict[str, Any] = field(default_factory=dict)
    resume_from: str | None = None
    ray_address: str | None = None
    program: str | None = None  # a programme (configs/program/): the DR task's events and credit follow it
    tensorboard: bool = True
    output_dir: str = "."

    def __post_init__(self) -> None:
        check_policy_names("eval_policies", self.eval_policies)
        check_seed("seed", self.seed)
        for s in self.eval_seeds:
            check_seed("eval_seeds", s)
        if not self.eval_seeds:
            raise ValueError("eval_seeds must list at least one seed")
        if self.evaluate and not [p for p in self.eval_policies if p != self.agent.name]:
            raise ValueError("eval_policies must name at least one yardstick to compare with, e.g. [no_control]")
        if self.agent.name == "rllib_ppo" and self.agent.train_batch_size < self.fleet.num_homes:
            raise ValueError(f"agent.train_batch_size counts home-steps: it must be >= fleet.num_homes="
                             f"{self.fleet.num_homes}, got {self.agent.train_batch_size}")
        if self.agent.name != "sb3_sac" and self.agent.minibatch_size > self.agent.train_batch_size:
            raise ValueError(f"agent.minibatch_size must be <= agent.train_batch_size={self.agent.train_batch_size}, "
                             f"got {self.agent.minibatch_size}")
        if self.eval_start_days is not None and len(self.eval_start_days) not in (1, len(self.eval_seeds)):
            raise ValueError(f"eval_start_days must have 1 or len(eval_seeds)={len(self.eval_seeds)} entries, "
                             f"got {len(self.eval_start_days)}")
        if self.days not in ("train", "all"):
            raise ValueError(f"days must be 'train' (training never sees a held-out day) or 'all', got {self.days!r}")
        scenario_from_kwargs(**self.env_kwargs())  # dt_s, episode_hours, task names (no data loaded yet)
        if self.agent.fleets_in_one_pass == "on" and self.one_pass_obstacle():
            raise ValueError(f"agent.fleets_in_one_pass=on: {self.one_pass_obstacle()}; set it to auto or off")
        homes_per_step = self.fleet.num_homes * self.fleets_per_env
        if self.agent.name == "rllib_ppo" and self.agent.train_batch_size < homes_per_step:
            raise ValueError(f"agent.train_batch_size counts home-steps: it must be >= the {homes_per_step} homes "
                             f"of one env step ({self.fleets_per_env} fleets in one pass), got "
                             f"{self.agent.train_batch_size}")
        if self.resume_from is not None:
            check_checkpoint("resume_from", self.resume_from, self.agent.name)

    def one_pass_obstacle(self) -> str | None:
        """Why the training fleets cannot be simulated in one pass (``agent.fleets_in_one_pass``), or None."""
        tasks = task_dict(self.task, {})
        unsupported = [name for name in tasks if not TASKS[name].supports_clocks]
        if unsupported:
            return f"the task(s) {unsupported} need one fleet per env (supported: " \
                   f"{sorted(n for n, t in TASKS.items() if t.supports_clocks)})"
        if self.shield.enabled and self.shield.feeder_limit_kw is not None:
            return "the shield's feeder limit couples one fleet's homes"
        a = self.agent
        if a.name != "rllib_ppo" or not a.home_batch:
            return "only the RLlib home-batch path (agent=rllib_ppo, agent.home_batch=true) simulates fleets in one pass"
        if a.fleets_in_one_pass == "auto" and self.fleet.num_homes * a.num_envs_per_env_runner * 4 > a.minibatch_size:
            return (f"{a.num_envs_per_env_runner} fleets of {self.fleet.num_homes} homes are too many homes per env "
                    f"step for minibatches of {a.minibatch_size} home-steps (auto needs homes x fleets <= "
                    f"minibatch_size / 4)")
        return None

    @property
    def fleets_per_env(self) -> int:
        """RLlib home-batch: fleets each training env simulates in one pass (1: one fleet per env)."""
        a = self.agent
        if a.fleets_in_one_pass == "off" or self.one_pass_obstacle():
            return 1
        return a.num_envs_per_env_runner

    @property
    def eval_days(self) -> str:
        """The split the final evaluation runs on: the held-out days, unless training used every day."""
        return "held_out" if self.days == "train" else "all"

    def env_kwargs(self, days: str | None = None) -> dict:
        """Keyword arguments of ``VppEnv`` for this run's scenario: the training env (training days, the terminal
        value shaped for the agent's discount) unless ``days`` names another split (scored as is)."""
        kwargs = {"task": task_dict(self.task, task_params_under(self.program, self.task, self.task_params)), "fleet": self.fleet, "dt_s": self.dt_s,
                  "episode_hours": self.episode_hours, "days": days or self.days}
        if days is None and self.agent.name in LEARNERS:  # the scored problem, for a discounting learner
            kwargs.update(shaping_gamma=self.agent.gamma, storage_potential=self.agent.storage_potential,
                          horizon_is_terminal=True)
        if self.dataset:
            kwargs.update(dataset=self.dataset, citylearn_replicate=True)
        return kwargs


def check_checkpoint(field_name: str, path: str, agent: str) -> None:
    """FileNotFoundError naming the field unless ``path`` is a checkpoint directory of ``agent``."""
    p = Path(path).expanduser()
    marker = CHECKPOINT_MARKERS.get(agent)
    if marker is None:
        raise ValueError(f"{field_name}: agent {agent!r} has nothing to resume (choose one of {list(LEARNERS)})")
    if not (p / marker).is_file():
        raise FileNotFoundError(f"{field_name}: {p.resolve()} is not a {agent} checkpoint (no {marker} in it); give "
                                f"the checkpoint/ directory an earlier run wrote")
