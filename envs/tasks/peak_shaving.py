"""Peak shaving: keep the fleet's aggregate import under a feeder / site limit."""

from __future__ import annotations

import numpy as np

from ..fleet import Fleet, StepOutcome
from .base import Task, check_ranges, split_by_weight


class PeakShaving(Task):
    """Penalty ``penalty_per_kwh`` $ for each kWh the aggregate exceeds ``limit_kw_per_home * N``.

    The fleet penalty is split across homes in proportion to their import (the homes drawing
    the most carry the most of the overshoot).
    """

    name = "peak_shaving"
    obs_names = ("feeder_limit_per_home_kw", "last_overshoot_per_home_kw")

    def __init__(self, limit_kw_per_home: float = 3.0, penalty_per_kwh: float = 1.0) -> None:
        check_ranges("PeakShaving", limit_kw_per_home=(limit_kw_per_home, 0.001, 1000.0),
                     penalty_per_kwh=(penalty_per_kwh, 0.0, 1000.0))
        self.limit_kw_per_home = limit_kw_per_home
        self.penalty_per_kwh = penalty_per_kwh

    def reset(self, fleet: Fleet, episode_steps: int, rng: np.random.Generator) -> None:
        super().reset(fleet, episode_steps, rng)
        self.limit_kw = self.limit_kw_per_home * fleet.n
        self.overshoot_kw = 0.0
        self.overshoot_kwh = 0.0
        self.max_overshoot_kw = 0.0

    def observation(self, fleet: Fleet) -> np.ndarray:
        return np.array([self.limit_kw_per_home, self.overshoot_kw / self.n])

    def reward(self, fleet: Fleet, outcome: StepOutcome) -> np.ndarray:
        self.t += 1
        agg = float(outcome.net_kw.sum(dtype=np.float64))
        self.overshoot_kw = max(agg - self.limit_kw, 0.0)
        self.overshoot_kwh += self.overshoot_kw * self.dt_h
        self.max_overshoot_kw = max(self.max_overshoot_kw, self.overshoot_kw)
        if self.overshoot_kw == 0.0:
            return np.zeros(self.n)
        return -split_by_weight(self.penalty_per_kwh * self.overshoot_kw * self.dt_h,
                                np.maximum(outcome.net_kw, 0.0))

    def kpis(self) -> dict[str, float]:
        return {"feeder_overshoot_kwh": self.overshoot_kwh, "feeder_max_overshoot_kw": self.max_overshoot_kw,
                "feeder_limit_kw": self.limit_kw}

    def step_info(self) -> dict[str, float]:
        return {"feeder_limit_kw": self.limit_kw, "feeder_overshoot_kw": self.overshoot_kw}
