"""Rooftop PV: output from a per-kWp profile, curtailable down to zero."""

from __future__ import annotations

import numpy as np

from .base import Device


class Solar(Device):
    """PV of all homes; ``kwp`` is installed capacity (0 for homes without PV).
    Injection is negative power: full output by default, action +1 curtails to zero."""

    def __init__(self, kwp: np.ndarray, dt_h: float) -> None:
        self.kwp = kwp
        self.dt_h = dt_h
        self.owned = kwp > 0
        self.available_kw = np.zeros_like(kwp)
        self.p_min = np.zeros_like(kwp)
        self.p_max = np.zeros_like(kwp)

    def update(self, kw_per_kwp: np.ndarray) -> None:
        """Set this step's available output from the profile value (kW per kWp)."""
        np.multiply(self.kwp, kw_per_kwp, out=self.available_kw)

    def prepare(self) -> None:
        self.p_min = self.p_lo = self.p_default = -self.available_kw
        self.p_hi = self.p_max

    def step(self, p_kw: np.ndarray) -> np.ndarray:
        return np.clip(p_kw, self.p_min, self.p_max)
