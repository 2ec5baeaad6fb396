"""Commercial / industrial flexible loads: curtail or shift against a baseline, with rebound.

``backlog_kwh`` is energy owed to the process: curtailing below the baseline adds to it,
consuming above the baseline repays it (a negative backlog is energy consumed ahead of time).
By default the site repays its backlog as fast as ``max_rebound_kw`` allows: the rebound; and energy
consumed ahead (a pre-cooled cold store, a reservoir pumped early) is used up by its own control drawing
less, down to the curtailment floor, as the process's own thermostat or level switch would.
Each energy-neutral window (a day, ending at midnight) settles the backlog: what is still owed
then is unserved process energy, a cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Device


@dataclass
class FlexLoadParams:
    """Per-home arrays (N,); sites without flexible load have scale_kw = 0."""

    scale_kw: np.ndarray  # baseline = scale_kw * profile value
    max_curtail_fraction: np.ndarray  # of the baseline, 0..1
    max_rebound_kw: np.ndarray  # consumption allowed above the baseline
    max_backlog_kwh: np.ndarray  # bound on |backlog|


class FlexLoad(Device):
    """All flexible loads of the fleet."""

    def __init__(self, params: FlexLoadParams, dt_h: float) -> None:
        self.params = p = params
        self.dt_h = dt_h
        self.owned = p.scale_kw > 0
        self.backlog_kwh = np.zeros_like(p.scale_kw)
        self.baseline_kw = np.zeros_like(p.scale_kw)
        self._keep_fraction = 1.0 - p.max_curtail_fraction
        self._max_backlog_kw = p.max_backlog_kwh / dt_h

    def reset(self, rng: np.random.Generator) -> None:
        self.backlog_kwh[:] = 0.0

    def update(self, profile_kw: np.ndarray) -> None:
        np.multiply(self.params.scale_kw, profile_kw, out=self.baseline_kw)

    def prepare(self) -> None:
        p = self.params
        b = self.baseline_kw
        backlog_kw = self.backlog_kwh / self.dt_h
        lo = np.maximum(b * self._keep_fraction, b - self._max_backlog_kw + backlog_kw)
        hi = b + np.minimum(p.max_rebound_kw, backlog_kw + self._max_backlog_kw)
        self.p_min = np.minimum(lo, b)
        self.p_max = np.maximum(hi, self.p_min)
        self.p_default = np.clip(b + np.clip(backlog_kw, b * self._keep_fraction - b, p.max_rebound_kw),
                                 self.p_min, self.p_max)
        self.p_lo, self.p_hi = self.p_min, self.p_max

    def step(self, p_kw: np.ndarray) -> np.ndarray:
        p_kw = np.clip(p_kw, self.p_min, self.p_max)
        self.backlog_kwh += (self.baseline_kw - p_kw) * self.dt_h
        return p_kw

    def settle_window(self, homes: np.ndarray | None = None) -> np.ndarray:
        """End an energy-neutral window (for every site, or the ``homes`` (N,) bool whose midnight it is):
        return unserved kWh and reset the backlog."""
        if homes is None:
            unserved = np.maximum(self.backlog_kwh, 0.0)
            self.backlog_kwh[:] = 0.0
            return unserved
        unserved = np.where(homes, np.maximum(self.backlog_kwh, 0.0), 0.0).astype(self.backlog_kwh.dtype)
        self.backlog_kwh[homes] = 0.0
        return unserved
