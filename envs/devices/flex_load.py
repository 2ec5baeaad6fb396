"""Commercial / industrial flexible loads: curtail or shift against a baseline, with rebound.

``backlog_kwh`` is energy owed to the process: curtailing below the baseline adds to it,
consuming above the baseline repays it (a negative backlog is energy consumed ahead of time).
By default the site repays its backlog as fast as ``max_rebound_kw`` allows: the rebound.
Each energy-neutral window (a day, ending at midnight) settles the backlog: what is still owed
then is unserved process energy, a cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FlexLoadParams:
    """Per-home arrays (N,); sites without flexible load have scale_kw = 0."""

    scale_kw: np.ndarray  # baseline = scale_kw * profile value
    max_curtail_fraction: np.ndarray  # of the baseline, 0..1
    max_rebound_kw: np.ndarray  # consumption allowed above the baseline
    max_backlog_kwh: np.ndarray  # bound on |backlog|


class FlexLoad:
    """All flexible loads of the fleet."""

    def __init__(self, params: FlexLoadParams) -> None:
        self.params = params
        self.owned = params.scale_kw > 0
        self.backlog_kwh = np.zeros_like(params.scale_kw)
        self.baseline_kw = np.zeros_like(params.scale_kw)

    def reset(self, rng: np.random.Generator) -> None:
        self.backlog_kwh[:] = 0.0

    def update(self, profile_kw: np.ndarray) -> None:
        np.multiply(self.params.scale_kw, profile_kw, out=self.baseline_kw)

    def feasible_power(self, dt_h: float) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        b = self.baseline_kw
        lo = np.maximum(b * (1.0 - p.max_curtail_fraction), b - (p.max_backlog_kwh - self.backlog_kwh) / dt_h)
        hi = np.minimum(b + p.max_rebound_kw, b + (self.backlog_kwh + p.max_backlog_kwh) / dt_h)
        lo = np.minimum(lo, b)
        return lo, np.maximum(hi, lo)

    def default_power(self, dt_h: float) -> np.ndarray:
        return self.baseline_kw + np.clip(self.backlog_kwh / dt_h, 0.0, self.params.max_rebound_kw)

    def action_range(self, dt_h: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lo, hi = self.feasible_power(dt_h)
        return lo, np.clip(self.default_power(dt_h), lo, hi), hi

    def step(self, p_kw: np.ndarray, dt_h: float) -> np.ndarray:
        lo, hi = self.feasible_power(dt_h)
        p_kw = np.clip(p_kw, lo, hi)
        self.backlog_kwh += (self.baseline_kw - p_kw) * dt_h
        return p_kw

    def settle_window(self) -> np.ndarray:
        """End an energy-neutral window: return unserved kWh and reset the backlog."""
        unserved = np.maximum(self.backlog_kwh, 0.0)
        self.backlog_kwh[:] = 0.0
        return unserved
