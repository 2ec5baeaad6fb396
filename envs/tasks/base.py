"""A grid service the fleet delivers: its signals, its share of the reward, its KPIs.

Tasks compose: a scenario carries several and the reward is their sum. Rewards are per home
in $ (a task that judges the fleet as a whole splits its fleet-level term across homes by a
documented rule), so the centralized and the multi-agent env optimise the same objective.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..fleet import Fleet, StepOutcome


def check_ranges(owner: str, **params: tuple[float, float, float]) -> None:
    """Raise ValueError naming ``owner.param`` and its range for the first value outside [lo, hi]."""
    for name, (value, lo, hi) in params.items():
        if not lo <= value <= hi:
            raise ValueError(f"{owner}.{name} must be in [{lo}, {hi}], got {value!r}")


def split_by_weight(total: float | np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Split a fleet-level amount across homes in proportion to ``weights`` (equally if all 0).
    Rows: ``weights`` (K, M) and ``total`` (K,) split each row's total within that row (K fleets in one pass)."""
    if weights.ndim == 2:
        sums = weights.sum(axis=1, dtype=np.float64)
        drawing = sums > 1e-12
        with np.errstate(divide="ignore", invalid="ignore"):
            per_weight = np.where(drawing, total / sums, 0.0).astype(weights.dtype)
        equal = np.where(drawing, 0.0, total / weights.shape[1]).astype(weights.dtype)
        return weights * per_weight[:, None] + equal[:, None]
    s = float(weights.sum(dtype=np.float64))
    if s <= 1e-12:
        return np.full(len(weights), total / len(weights), dtype=weights.dtype)
    return weights * (total / s)


class Task(ABC):
    """Base class; subclasses set ``name`` and ``obs_names``."""

    name: str = "task"
    obs_names: tuple[str, ...] = ()
    #: works on a fleet with several clocks (``Fleet.clocks`` > 1): per-clock observations (K, obs) and
    #: per-home rewards from each home's own clock, fleet-level terms per clock
    supports_clocks: bool = False

    def reset(self, fleet: Fleet, episode_steps: int, rng: np.random.Generator) -> None:
        """Prepare the episode (schedules, signals); called after the fleet was reset."""
        self.n = fleet.n
        self.dt_h = fleet.dt_h
        self.episode_steps = episode_steps
        self.t = 0

    def observation(self, fleet: Fleet) -> np.ndarray:
        """Global features for the upcoming step, scale-free (per home where sizes matter)."""
        return np.zeros(len(self.obs_names))

    @abstractmethod
    def reward(self, fleet: Fleet, outcome: StepOutcome) -> np.ndarray:
        """Per-home reward in $ for the step just simulated; advances the task clock."""

    def own_control_homes(self) -> np.ndarray | None:
        """(N,) bool: homes whose devices follow their own control in the upcoming step whatever the policy
        asks (an occupant who opted out of a DR event), or None for none."""
        return None

    def kpis(self) -> dict[str, float]:
        """Task-specific KPIs at episode end."""
        return {}

    def step_info(self) -> dict[str, float]:
        """Scalars worth logging every step (fleet level)."""
        return {}
