"""``VppHomeBatchEnv``: the fleet as one env whose observation and action *rows are homes*.

The multi-agent problem of ``VppMultiAgentEnv`` (one agent per home, one shared policy, home i sees
its features then the global ones and earns its own reward) with the homes as a batch axis instead
of a per-agent dict: observation (N, F + G), action (N, D), and ``info["reward_per_home"]`` (N,).
A shared per-home policy applies over the first axis, and a learner that reads the per-home rewards
(``vpprl.training.rllib_home_batch``) computes per-home advantages, so the learning problem is
unchanged while the RL library handles one env step per fleet step instead of N agent steps.
The scalar ``reward`` is the fleet mean (as in ``VppEnv``), for logging.

``info["reward_weight"]`` (N,) puts every home's reward on a common scale for learning: 1 / site size,
the size counted in typical homes (1 + the C&I flexible load's mean kW). A 300 kW C&I site's dollars
would otherwise swamp the value loss and the advantage normalisation of a fleet of 1 kW homes. A
positive constant per home leaves each home's optimal policy unchanged. Imports neither torch nor ray.

``fleets`` = K > 1 simulates K independent fleets of ``num_homes`` homes in one vectorized pass, each with its
own clock (start day and hour) and its own homes (as K single-fleet envs would draw them): the rows are then
K * num_homes homes, fleet k's in rows [k * num_homes, (k + 1) * num_homes). A small fleet's step is mostly
fixed numpy overhead, so K fleets cost about one step instead of K (``benchmarks/env_throughput.py``). Each
home's observation, reward and shield are those of its own fleet; ``info["kpis"]`` is the mean over the fleets,
while the per-step fleet totals in ``info`` (``aggregate_kw``, ``cost``, ``shield``) sum over all K.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import gymnasium as gym
import numpy as np

from .fleet import NUM_DEVICE_CLASSES
from .tasks.base import check_ranges
from .vpp_env import VppEnv, scenario_from_kwargs, unpack_env_config


class VppHomeBatchEnv(gym.Env):
    """Accepts the same arguments as :class:`VppEnv`, or an RLlib ``EnvContext``/dict of them as its
    only positional argument. ``shield``: a ``vpprl.deployment.Shield`` every action passes through.
    ``resample_fleet``: draw a fresh fleet (same ``FleetConfig``, a new seed from the env's RNG) at every
    reset, so a per-home policy trains on many more homes than N (building one costs < 1 ms).
    ``fleets``: K fleets side by side in one pass (see the module docstring): K fresh fleet seeds per reset with
    ``resample_fleet``, else the configured fleet K times (as K separate envs of one config), or the fleets of
    ``fleet_seeds`` (K seeds) if given."""

    metadata = {"render_modes": []}

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        config, kwargs = unpack_env_config(config, kwargs)
        self.shield = kwargs.pop("shield", None)
        self.penalty_per_kwh = float(kwargs.pop("shield_penalty_per_kwh", 0.0))
        feeder = getattr(getattr(self.shield, "config", None), "feeder_limit_kw", None)
        if feeder is not None and kwargs.get("fleets", 1) != 1:
            raise ValueError(f"{type(self).__name__}: a shield feeder limit ({feeder} kW) couples one fleet's homes; "
                             "with fleets > 1 the env simulates several fleets: use fleets=1 or no feeder limit")
        check_ranges(type(self).__name__, shield_penalty_per_kwh=(self.penalty_per_kwh, 0.0, 1e4))
        if self.penalty_per_kwh and self.shield is None:
            raise ValueError(f"{type(self).__name__}: shield_penalty_per_kwh needs a shield (shield=...)")
        self.resample_fleet = bool(kwargs.pop("resample_fleet", False))
        self.fleets = kwargs.pop("fleets", 1)
        if not (isinstance(self.fleets, (int, np.integer)) and 1 <= self.fleets <= 4096):
            raise ValueError(f"{type(self).__name__}: fleets must be a whole number in [1, 4096], got {self.fleets!r}")
        self._profiles = kwargs.get("profiles")  # explicit profiles stay; else the config's data source
        seeds = kwargs.pop("fleet_seeds", None)
        if seeds is not None and len(seeds) != self.fleets:
            raise ValueError(f"{type(self).__name__}: fleet_seeds must list one seed per fleet ({self.fleets}), "
                             f"got {len(seeds)}")
        if self.fleets > 1:
            profiles = kwargs.pop("profiles", None)
            config = scenario_from_kwargs(config=config, **kwargs)
            kwargs = {"profiles": profiles, "fleet_seeds": seeds or [config.fleet.seed] * self.fleets}
        self.env = VppEnv(config, **kwargs)
        self.n = self.env.n
        self.home_features = self.env.home_features
        self.global_features = self.env.global_features
        width = len(self.home_features) + len(self.global_features)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.n, width), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.n, NUM_DEVICE_CLASSES), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self.resample_fleet:
            cfg = self.env.config
            # built from the config, so a CityLearn fleet keeps its buildings' device sizes (the data is cached)
            if self.fleets == 1:
                fleet_seed, seed = (int(x) for x in self.np_random.integers(0, 2**31 - 1, 2))
                self.env = VppEnv(replace(cfg, fleet=replace(cfg.fleet, seed=fleet_seed)), self._profiles)
            else:
                *fleet_seeds, seed = (int(x) for x in self.np_random.integers(0, 2**31 - 1, self.fleets + 1))
                self.env = VppEnv(cfg, self._profiles, fleet_seeds=fleet_seeds)
        info = self.env.reset_fleet(seed=seed, options=options)
        self.reward_weight = (1.0 / (1.0 + self.env.fleet.layout.flex_load.scale_kw)).astype(np.float32)
        return self.env.agent_observations(), info

    def step(self, action: np.ndarray):
        action = np.asarray(action)
        if action.shape != self.action_space.shape:
            raise ValueError(f"action must have shape {self.action_space.shape} (homes x device classes), "
                             f"got {action.shape}")
        reward, truncated, info = self.env.advance_action(action, self.shield, self.penalty_per_kwh)
        out = {"reward_per_home": reward.astype(np.float32), "reward_weight": self.reward_weight}
        for key in ("kpis", "shield", "shield_moved_kw"):
            if key in info:
                out[key] = info[key]
        terminated, truncated = self.env.end_flags(truncated)
        return self.env.agent_observations(), float(reward.mean(dtype=np.float64)), terminated, truncated, out
