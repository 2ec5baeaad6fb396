"""The one policy interface that evaluation, the shield and the dispatch loop call.

``reset(env)`` binds a policy to an environment (its layout, telemetry and public signals) at the
start of an episode; ``act(obs)`` maps the observation batch to the action batch, home-major
(N * D,) in [-1, 1] as ``VppEnv`` expects. Learned policies use only ``obs``. Controllers that
decide in kW (rule-based, oracle, MPC) derive from :class:`SetpointPolicy`: they read device
telemetry, choose setpoints, and the base class turns them into the action that maps to exactly
those setpoints this step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..envs.devices import inverse_map_action
from ..envs.fleet import NUM_DEVICE_CLASSES
from ..envs.vpp_env import VppEnv


class Policy(ABC):
    """``act(observation batch) -> action batch``, plus ``reset`` at each episode start."""

    name: str = "policy"
    #: True only for the oracle: it must run on an env with perfect foresight (``VppEnv.set_perfect_foresight``)
    sees_future: bool = False

    def reset(self, env: VppEnv) -> None:
        """Bind to ``env`` for a new episode (called after ``env.reset``)."""
        self.env = env

    @abstractmethod
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Home-major normalized action (N * D,) for the current step."""


class NoControl(Policy):
    """Every device left to its own control: the zero action. The reference for savings."""

    name = "no_control"

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.zeros(self.env.action_space.shape, dtype=np.float32)


class SetpointPolicy(Policy):
    """Base for controllers that choose device-major kW setpoints (D, N)."""

    def reset(self, env: VppEnv) -> None:
        """Bind to ``env``; controllers read one fleet's clock, prices and aggregates, so an env simulating
        several fleets in one pass (``VppEnv(fleet_seeds=...)``) is refused."""
        clocks = getattr(env, "clocks", 1)
        if clocks != 1:
            raise ValueError(f"{self.name}: plans and acts on one fleet; this env simulates {clocks} fleets in one "
                             "pass (fleet_seeds / fleets): give it an env of one fleet")
        super().reset(env)

    @abstractmethod
    def setpoints(self) -> np.ndarray:
        """(D, N) kW setpoints for the current step."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        fleet = self.env.fleet
        lo, de, hi = fleet.action_ranges()
        sp = np.asarray(self.setpoints(), dtype=np.float64)
        a = inverse_map_action(np.clip(sp, lo, hi), lo, de, hi)
        assert a.shape == (NUM_DEVICE_CLASSES, fleet.n)
        return np.ascontiguousarray(a.T, dtype=np.float32).ravel()
