"""Gymnasium wrappers that put the shield in the training loop.

``ShieldWrapper`` must sit directly on ``VppEnv`` (it steps the env with setpoints). It reports what the
shield changed in ``info["shield"]`` (fleet totals per device class) and ``info["shield_moved_kw"]``
(per home), and can subtract ``penalty_per_kwh`` $ per kWh moved, so a policy learns to need the shield
less. The same :class:`Shield` object is what the dispatch loop runs.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from ..envs.vpp_env import VppEnv
from .shield import Shield


class ShieldWrapper(gym.Wrapper):
    def __init__(self, env: gym.Env, shield: Shield | None = None, penalty_per_kwh: float = 0.0) -> None:
        super().__init__(env)
        if not isinstance(env.unwrapped, VppEnv) or env is not env.unwrapped:
            raise TypeError("ShieldWrapper must wrap a VppEnv directly (it steps the env with setpoints)")
        if penalty_per_kwh < 0:
            raise ValueError(f"ShieldWrapper.penalty_per_kwh must be >= 0 $/kWh, got {penalty_per_kwh}")
        self.shield = shield or Shield()
        self.penalty_per_kwh = penalty_per_kwh

    def step(self, action: np.ndarray):
        vpp: VppEnv = self.env.unwrapped
        result = self.shield.project(vpp.fleet, vpp.fleet.setpoints_from_action(action))
        obs, reward, terminated, truncated, info = vpp.step_setpoints(result.setpoints_kw)
        moved = result.moved_kw.sum(axis=0)
        info["shield"] = result.summary()
        info["shield_moved_kw"] = moved
        if self.penalty_per_kwh:
            penalty = self.penalty_per_kwh * moved * vpp.fleet.dt_h
            info["reward_per_home"] = info["reward_per_home"] - penalty
            reward -= float(penalty.mean())
        return obs, reward, terminated, truncated, info
