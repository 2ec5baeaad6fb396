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
    supports_clocks = True  # one feeder per fleet: limit, overshoot and penalty split per clock
    obs_names = ("feeder_limit_per_home_kw", "last_overshoot_per_home_kw")

    def __init__(self, limit_kw_per_home: float = 3.0, penalty_per_kwh: float = 1.0) -> None:
        check_ranges("PeakShaving", limit_kw_per_home=(limit_kw_per_home, 0.001, 1000.0),
                     penalty_per_kwh=(penalty_per_kwh, 0.0, 1000.0))
        self.limit_kw_per_home = limit_kw_per_home
        self.penalty_per_kwh = penalty_per_kwh

    def reset(self, fleet: Fleet, episode_steps: int, rng: np.random.Generator) -> None:
        super().reset(fleet, episode_steps, rng)
        self.clocks = fleet.clocks
        self.homes_per_feeder = fleet.n // fleet.clocks
        self.limit_kw = self.limit_kw_per_home * self.homes_per_feeder
        zero = 0.0 if self.clocks == 1 else np.zeros(self.clocks)  # per feeder with several fleets
        self.overshoot_kw = zero
        self.overshoot_kwh = zero
        self.max_overshoot_kw = zero

    def observation(self, fleet: Fleet) -> np.ndarray:
        return np.stack(np.broadcast_arrays(self.limit_kw_per_home, self.overshoot_kw / self.homes_per_feeder),
                        axis=-1).astype(np.float64)

    def reward(self, fleet: Fleet, outcome: StepOutcome) -> np.ndarray:
        self.t += 1
        if self.clocks > 1:
            return self._reward_per_feeder(fleet, outcome)
        agg = float(outcome.net_kw.sum(dtype=np.float64))
        self.overshoot_kw = max(agg - self.limit_kw, 0.0)
        self.overshoot_kwh += self.overshoot_kw * self.dt_h
        self.max_overshoot_kw = max(self.max_overshoot_kw, self.overshoot_kw)
        if self.overshoot_kw == 0.0:
            return np.zeros(self.n)
        # float64 like the zeros above, so the reward's dtype does not depend on whether the feeder overshot
        return -split_by_weight(self.penalty_per_kwh * self.overshoot_kw * self.dt_h,
                                np.maximum(outcome.net_kw, 0.0)).astype(np.float64)

    def _reward_per_feeder(self, fleet: Fleet, outcome: StepOutcome) -> np.ndarray:
        """Each fleet's feeder on its own: the same rule as one fleet, split within the fleet."""
        self.overshoot_kw = np.maximum(fleet.clock_sums(outcome.net_kw) - self.limit_kw, 0.0)
        self.overshoot_kwh = self.overshoot_kwh + self.overshoot_kw * self.dt_h
        self.max_overshoot_kw = np.maximum(self.max_overshoot_kw, self.overshoot_kw)
        if not self.overshoot_kw.any():
            return np.zeros(self.n)
        imports = np.maximum(outcome.net_kw, 0.0).reshape(self.clocks, -1)
        penalty = self.penalty_per_kwh * self.overshoot_kw * self.dt_h
        return -split_by_weight(penalty, imports).reshape(-1).astype(np.float64)

    def kpis(self) -> dict[str, float]:
        """Per feeder (the mean over the fleets, with several)."""
        return {"feeder_overshoot_kwh": float(np.mean(self.overshoot_kwh)),
                "feeder_max_overshoot_kw": float(np.mean(self.max_overshoot_kw)), "feeder_limit_kw": self.limit_kw}

    def step_info(self) -> dict[str, float]:
        return {"feeder_limit_kw": self.limit_kw, "feeder_overshoot_kw": float(np.mean(self.overshoot_kw))}
