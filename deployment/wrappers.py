"""Gymnasium wrappers that put the shield in the training loop.

``ShieldWrapper`` must sit directly on ``VppEnv`` (it steps the env with setpoints). It reports what the
shield changed in ``info["shield"]`` (fleet totals per device class) and ``info["shield_moved_kw"]``
(per home), and can subtract ``penalty_per_kwh`` $ per kWh moved, so a policy learns to need the shield
less. The same :class:`Shield` object is what the dispatch loop runs.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from ..envs.tasks.base import check_ranges
from ..envs.vpp_env import VppEnv
from .shield import Shield

MAX_PENALTY_PER_KWH = 1e4


class ShieldWrapper(gym.Wrapper):
    def __init__(self, env: gym.Env, shield: Shield | None = None, penalty_per_kwh: float = 0.0) -> None:
        super().__init__(env)
        if not isinstance(env.unwrapped, VppEnv) or env is not env.unwrapped:
            raise TypeError("ShieldWrapper must wrap a VppEnv directly (it steps the env with setpoints)")
        check_ranges("ShieldWrapper", penalty_per_kwh=(penalty_per_kwh, 0.0, MAX_PENALTY_PER_KWH))
        self.shield = shield or Shield()
        self.penalty_per_kwh = penalty_per_kwh

    def step(self, action: np.ndarray):
        vpp: VppEnv = self.env.unwrapped
        return vpp.step_action(action, self.shield, self.penalty_per_kwh)
