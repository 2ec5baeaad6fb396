"""Smart thermostats with a heat pump: first-order RC model of the home, COP that depends on the
outdoor temperature, comfort band per home (tighter for vulnerable occupants, e.g. an infant).

Exact discretisation for inputs held over a step of dt hours (tau = R*C hours):
    T' = a*T + (1-a)*(T_out + R*Q_gain) + (1-a)*R*Q_hp,   a = exp(-dt/tau)
with Q_hp = +COP_heat*P (heating) or -COP_cool*P (cooling), P the electrical power in kW.
The heat pump's mode is seasonal, as a thermostat's heat/cool switch is: heating while the
outdoor temperature is below the home's balance temperature, cooling above it. The mode is
therefore exogenous (known from the weather), and T' is linear in P, which the shield and the
LP oracle use (``free_temp_c + gain_c_per_kw * P``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import ThermalDevice


def cop_heating(t_out_c: float | np.ndarray) -> float | np.ndarray:
    """Air-source heat pump heating COP: 3.0 at 7 degC, 0.06 lower per K colder, bounded to [1.5, 5]."""
    return np.clip(3.0 + 0.06 * (np.asarray(t_out_c, dtype=np.float64) - 7.0), 1.5, 5.0)[()]


def cop_cooling(t_out_c: float | np.ndarray) -> float | np.ndarray:
    """Cooling COP (EER in kW/kW): 4.0 at 27 degC, 0.08 lower per K hotter, bounded to [2, 6]."""
    return np.clip(4.0 - 0.08 * (np.asarray(t_out_c, dtype=np.float64) - 27.0), 2.0, 6.0)[()]


@dataclass
class ThermostatParams:
    """Per-home arrays (N,); homes without a controllable heat pump have heat_pump_kw = 0."""

    resistance_c_per_kw: np.ndarray  # R, degC per kW
    capacitance_kwh_per_c: np.ndarray  # C, kWh per degC
    heat_pump_kw: np.ndarray  # rated electrical power, kW
    comfort_low_c: np.ndarray
    comfort_high_c: np.ndarray
    solar_aperture_m2: np.ndarray  # effective window area: solar gain kW = aperture * GHI / 1000
    internal_gain_kw: np.ndarray
    balance_temp_c: np.ndarray  # heat below this outdoor temperature, cool above it


class Thermostat(ThermalDevice):
    """All thermostats; ``temp_c`` is the indoor temperature."""

    def __init__(self, params: ThermostatParams, dt_h: float) -> None:
        self.params = p = params
        self.dt_h = dt_h
        self.owned = p.heat_pump_kw > 0
        self._owned_f = self.owned.astype(p.heat_pump_kw.dtype)
        self.setpoint_c = 0.5 * (p.comfort_low_c + p.comfort_high_c)
        self.decay = np.exp(-dt_h / (p.resistance_c_per_kw * p.capacitance_kwh_per_c))
        self._one_minus_decay = 1.0 - self.decay
        self._gain_per_kw_thermal = self._one_minus_decay * p.resistance_c_per_kw  # degC per thermal kW
        self._aperture_kw_per_w_m2 = p.solar_aperture_m2 / 1000.0
        self.temp_c = self.setpoint_c.copy()
        self.free_temp_c = self.temp_c.copy()  # end-of-step temperature with the heat pump off
        self.gain_c_per_kw = np.ones_like(self.temp_c)  # dT'/dP for this step (sign = mode)
        self.heating = np.ones(len(self.temp_c), dtype=bool)
        self.p_min = self.p_lo = np.zeros_like(self.temp_c)
        self.p_max = self.p_hi = p.heat_pump_kw
        self._comfort_low_c, self._comfort_high_c = p.comfort_low_c, p.comfort_high_c

    def reset(self, rng: np.random.Generator) -> None:
        """Start within the comfort band."""
        p = self.params
        self.temp_c = rng.uniform(p.comfort_low_c, p.comfort_high_c).astype(p.comfort_low_c.dtype)

    def update(self, outdoor_c: float | np.ndarray, ghi_w_m2: float | np.ndarray) -> None:
        """Compute this step's free-running temperature, mode and power-to-temperature gain. The weather is one
        value for every home or one per home (fleets with several clocks); the COPs are computed in float64."""
        dtype = self.decay.dtype.type
        cop_h, cop_c = cop_heating(outdoor_c), cop_cooling(outdoor_c)
        outdoor_c, ghi_w_m2 = np.asarray(outdoor_c, dtype)[()], np.asarray(ghi_w_m2, dtype)[()]
        gain_kw = self.params.internal_gain_kw + self._aperture_kw_per_w_m2 * ghi_w_m2
        free = self.decay * self.temp_c
        free += self._gain_per_kw_thermal * gain_kw
        free += self._one_minus_decay * outdoor_c
        self.free_temp_c = free
        self.heating = outdoor_c < self.params.balance_temp_c
        signed_cop = self.heating * dtype(cop_h + cop_c)  # cop_h when heating, -cop_c when cooling
        signed_cop -= dtype(cop_c)
        self.gain_c_per_kw = self._gain_per_kw_thermal * signed_cop

    def power_for_temperature(self, target_c: np.ndarray) -> np.ndarray:
        """Electrical kW (unclipped) that ends this step at ``target_c`` in the current mode."""
        return (target_c - self.free_temp_c) / self.gain_c_per_kw

    def prepare(self) -> None:
        # the thermostat's own control: the power that brings the home to its setpoint, within limits
        self.p_default = np.clip(self.power_for_temperature(self.setpoint_c), 0.0, self.params.heat_pump_kw)
