"""Any policy behind the shield: what the trained policy asks for, projected onto the safe set, returned
as the action that maps to exactly those safe setpoints. Evaluation and the dispatch loop use this so
a policy trained with the shield in the loop is judged with it too."""

from __future__ import annotations

import numpy as np

from ..agents.policy import Policy, SetpointPolicy
from ..envs.vpp_env import VppEnv
from .shield import Shield


class ShieldedPolicy(SetpointPolicy):
    def __init__(self, inner: Policy, shield: Shield | None = None) -> None:
        self.inner = inner
        self.shield = shield or Shield()
        self.name = inner.name
        self._obs: np.ndarray | None = None

    def reset(self, env: VppEnv) -> None:
        super().reset(env)
        self.inner.reset(env)

    def act(self, obs: np.ndarray) -> np.ndarray:
        self._obs = obs
        return super().act(obs)

    def setpoints(self) -> np.ndarray:
        fleet = self.env.fleet
        return self.shield.project(fleet, fleet.setpoints_from_action(self.inner.act(self._obs))).setpoints_kw
