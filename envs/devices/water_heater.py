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

from .base import ThermalDevice

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


class WaterHeater(ThermalDevice):
    """All water heaters; ``temp_c`` is the tank temperature."""

    def __init__(self, params: WaterHeaterParams, dt_h: float) -> None:
        self.params = p = params
        self.dt_h = dt_h
        self.owned = p.element_kw > 0
        self._owned_f = self.owned.astype(p.element_kw.dtype)
        self.heat_capacity_kwh_per_c = p.volume_l * KWH_PER_LITRE_K
        self._kw_per_c = self.heat_capacity_kwh_per_c / dt_h
        self.gain_c_per_kw = dt_h / self.heat_capacity_kwh_per_c
        self._loss_factor = p.ua_kw_per_c * self.gain_c_per_kw  # fraction of (T1 - T_amb) lost per step
        self._inv_volume = 1.0 / p.volume_l
        self.temp_c = p.setpoint_c.copy()
        self.free_temp_c = self.temp_c.copy()
        self.last_draw_l = np.zeros_like(self.temp_c)
        self.p_min = self.p_lo = np.zeros_like(self.temp_c)
        self._comfort_low_c, self._comfort_high_c = p.comfort_low_c, p.comfort_high_c

    def reset(self, rng: np.random.Generator) -> None:
        p = self.params
        self.temp_c = rng.uniform(p.comfort_low_c + 2.0, p.setpoint_c + 2.0).astype(p.setpoint_c.dtype)

    def update(self, draw_l: np.ndarray) -> None:
        """Apply this step's draw and standby loss to get the element-off end-of-step temperature."""
        p = self.params
        self.last_draw_l = draw_l
        frac = np.minimum(draw_l * self._inv_volume, 1.0)
        t1 = self.temp_c - frac * (self.temp_c - p.inlet_c)
        self.free_temp_c = t1 - self._loss_factor * (t1 - p.ambient_c)

    def power_for_temperature(self, target_c: np.ndarray) -> np.ndarray:
        """Element kW (unclipped) that ends this step at ``target_c``."""
        return (target_c - self.free_temp_c) * self._kw_per_c

    def prepare(self) -> None:
        p = self.params
        self.p_max = np.clip(self.power_for_temperature(p.max_temp_c), 0.0, p.element_kw)
        self.p_default = np.clip(self.power_for_temperature(p.setpoint_c), 0.0, self.p_max)
        self.p_hi = self.p_max
