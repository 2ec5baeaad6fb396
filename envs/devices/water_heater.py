"""Electric resistance water heaters: one-node tank with draws, standby loss and a comfort band.

Per step: a draw of V_d litres replaces that volume with mains water (mixing), then the element
and the standby loss act on the mixed tank:
    T1 = T - min(V_d / V, 1) * (T - T_inlet)
    T' = T1 - UA*(T1 - T_ambient)*dt/c + P*dt/c,     c = V * 4.186 / 3600 kWh/K
The element's own high-limit cutoff keeps T' <= max_temp_c: that is physics, not control.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KWH_PER_LITRE_K = 4.186 / 3600.0


@dataclass
class WaterHeaterParams:
    """Per-home arrays (N,); homes without a controllable water heater have element_kw = 0."""

    volume_l: np.ndarray
    element_kw: np.ndarray
    comfort_low_c: np.ndarray  # hot water too cold below this
    comfort_high_c: np.ndarray  # load-up may heat up to this without a cost
    setpoint_c: np.ndarray  # what the tank's own thermostat holds
    max_temp_c: np.ndarray  # high-limit cutoff
    ua_kw_per_c: np.ndarray  # standby loss coefficient
    inlet_c: np.ndarray
    ambient_c: np.ndarray


class WaterHeater:
    """All water heaters; ``temp_c`` is the tank temperature."""

    def __init__(self, params: WaterHeaterParams) -> None:
        self.params = params
        self.owned = params.element_kw > 0
        self.heat_capacity_kwh_per_c = params.volume_l * KWH_PER_LITRE_K
        self.temp_c = params.setpoint_c.copy()
        self.free_temp_c = self.temp_c.copy()
        self.gain_c_per_kw = np.ones_like(self.temp_c)

    def reset(self, rng: np.random.Generator) -> None:
        p = self.params
        self.temp_c = rng.uniform(p.comfort_low_c + 2.0, p.setpoint_c + 2.0)

    def update(self, draw_l: np.ndarray, dt_h: float) -> None:
        """Apply this step's draw and standby loss to get the element-off end-of-step temperature."""
        p = self.params
        frac = np.minimum(draw_l / p.volume_l, 1.0)
        t1 = self.temp_c - frac * (self.temp_c - p.inlet_c)
        self.free_temp_c = t1 - p.ua_kw_per_c * (t1 - p.ambient_c) * dt_h / self.heat_capacity_kwh_per_c
        self.gain_c_per_kw = dt_h / self.heat_capacity_kwh_per_c

    def power_for_temperature(self, target_c: np.ndarray) -> np.ndarray:
        return (target_c - self.free_temp_c) / self.gain_c_per_kw

    def feasible_power(self, dt_h: float) -> tuple[np.ndarray, np.ndarray]:
        hi = np.clip(self.power_for_temperature(self.params.max_temp_c), 0.0, self.params.element_kw)
        return np.zeros_like(hi), hi

    def default_power(self) -> np.ndarray:
        return np.clip(self.power_for_temperature(self.params.setpoint_c), 0.0, self.params.element_kw)

    def action_range(self, dt_h: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lo, hi = self.feasible_power(dt_h)
        return lo, np.minimum(self.default_power(), hi), hi

    def step(self, p_kw: np.ndarray, dt_h: float) -> np.ndarray:
        lo, hi = self.feasible_power(dt_h)
        p_kw = np.clip(p_kw, lo, hi)
        self.temp_c = self.free_temp_c + self.gain_c_per_kw * p_kw
        return p_kw

    def discomfort_c(self) -> np.ndarray:
        p = self.params
        out = np.maximum(p.comfort_low_c - self.temp_c, 0.0) + np.maximum(self.temp_c - p.comfort_high_c, 0.0)
        return np.where(self.owned, out, 0.0)
