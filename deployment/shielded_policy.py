"""Any policy behind the shield: what the trained policy asks for, projected onto the safe set, returned
as the action that maps to exactly those safe setpoints. Evaluation and the dispatch loop use this so
a policy trained with the shield in the loop is judged with it too. ``interventions`` totals the
shield's reports over the episode (per device class: interventions and kW moved), for logging."""

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
        self.sees_future = inner.sees_future
        self._obs: np.ndarray | None = None
        self.interventions: dict[str, float] = {}

    def reset(self, env: VppEnv) -> None:
        super().reset(env)
        self.inner.reset(env)
        self.interventions = {}

    def act(self, obs: np.ndarray) -> np.ndarray:
        self._obs = obs
        return super().act(obs)

    def setpoints(self) -> np.ndarray:
        fleet = self.env.fleet
        result = self.shield.project(fleet, fleet.setpoints_from_action(self.inner.act(self._obs)))
        for key, value in result.summary().items():
            self.interventions[key] = self.interventions.get(key, 0.0) + value
        return result.setpoints_kw
