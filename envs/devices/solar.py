"""Rooftop PV: output from a per-kWp profile, curtailable down to zero."""

from __future__ import annotations

import numpy as np


class Solar:
    """PV of all homes; ``kwp`` is installed capacity (0 for homes without PV)."""

    def __init__(self, kwp: np.ndarray) -> None:
        self.kwp = kwp
        self.owned = kwp > 0
        self.available_kw = np.zeros_like(kwp)

    def update(self, kw_per_kwp: np.ndarray) -> None:
        """Set this step's available output from the profile value (kW per kWp)."""
        np.multiply(self.kwp, kw_per_kwp, out=self.available_kw)

    def action_range(self, dt_h: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Injection is negative: full output by default, +1 curtails to zero."""
        neg = -self.available_kw
        return neg, neg, np.zeros_like(neg)

    def feasible_power(self, dt_h: float) -> tuple[np.ndarray, np.ndarray]:
        return -self.available_kw, np.zeros_like(self.available_kw)

    def step(self, p_kw: np.ndarray, dt_h: float) -> np.ndarray:
        return np.clip(p_kw, -self.available_kw, 0.0)
