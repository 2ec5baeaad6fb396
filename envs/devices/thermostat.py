"""Smart thermostats with a heat pump: first-order RC model of the home, COP that depends on the
outdoor temperature, comfort band per home (tighter for vulnerable occupants, e.g. an infant).

Exact discretisation for inputs held over a step of dt hours (tau = R*C hours):
    T' = a*T + (1-a)*(T_out + R*Q_gain) + (1-a)*R*Q_hp,   a = exp(-dt/tau)
with Q_hp = +COP_heat*P (heating) or -COP_cool*P (cooling), P the electrical power in kW.
The heat pump's mode follows the need: heating when the free-running temperature would end
the step below the setpoint, cooling otherwise. T' is linear in P, which the shield and the
LP oracle use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def cop_heating(t_out_c: np.ndarray | float) -> np.ndarray:
    """Air-source heat pump heating COP: 3.0 at 7 degC, -0.06/K below, bounded to [1.5, 5]."""
    return np.clip(3.0 + 0.06 * (np.asarray(t_out_c) - 7.0), 1.5, 5.0)


def cop_cooling(t_out_c: np.ndarray | float) -> np.ndarray:
    """Cooling COP (EER in kW/kW): 4.0 at 27 degC, -0.08/K above, bounded to [2, 6]."""
    return np.clip(4.0 - 0.08 * (np.asarray(t_out_c) - 27.0), 2.0, 6.0)


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


class Thermostat:
    """All thermostats; ``temp_c`` is the indoor temperature."""

    def __init__(self, params: ThermostatParams, dt_h: float) -> None:
        self.params = params
        self.owned = params.heat_pump_kw > 0
        self.setpoint_c = 0.5 * (params.comfort_low_c + params.comfort_high_c)
        tau_h = params.resistance_c_per_kw * params.capacitance_kwh_per_c
        self.decay = np.exp(-dt_h / tau_h)
        self.temp_c = self.setpoint_c.copy()
        self.free_temp_c = self.temp_c.copy()  # end-of-step temperature with the heat pump off
        self.gain_c_per_kw = np.ones_like(self.temp_c)  # dT'/dP for this step (sign = mode)
        self.heating = np.ones(len(self.temp_c), dtype=bool)

    def reset(self, rng: np.random.Generator) -> None:
        """Start within the comfort band."""
        p = self.params
        self.temp_c = rng.uniform(p.comfort_low_c, p.comfort_high_c)

    def update(self, outdoor_c: float, ghi_w_m2: float) -> None:
        """Compute this step's free-running temperature, mode and power-to-temperature gain."""
        p = self.params
        a = self.decay
        gain_kw = p.internal_gain_kw + p.solar_aperture_m2 * (ghi_w_m2 / 1000.0)
        self.free_temp_c = a * self.temp_c + (1.0 - a) * (outdoor_c + p.resistance_c_per_kw * gain_kw)
        self.heating = self.free_temp_c < self.setpoint_c
        cop = np.where(self.heating, cop_heating(outdoor_c), -cop_cooling(outdoor_c))
        self.gain_c_per_kw = (1.0 - a) * p.resistance_c_per_kw * cop

    def power_for_temperature(self, target_c: np.ndarray) -> np.ndarray:
        """Electrical kW (unclipped) that ends this step at ``target_c`` in the current mode."""
        return (target_c - self.free_temp_c) / self.gain_c_per_kw

    def default_power(self) -> np.ndarray:
        """The thermostat's own control: the power that brings the home to its setpoint, within limits."""
        return np.clip(self.power_for_temperature(self.setpoint_c), 0.0, self.params.heat_pump_kw)

    def action_range(self, dt_h: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.zeros_like(self.temp_c), self.default_power(), self.params.heat_pump_kw

    def feasible_power(self, dt_h: float) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros_like(self.temp_c), self.params.heat_pump_kw

    def step(self, p_kw: np.ndarray, dt_h: float) -> np.ndarray:
        p_kw = np.clip(p_kw, 0.0, self.params.heat_pump_kw)
        self.temp_c = self.free_temp_c + self.gain_c_per_kw * p_kw
        return p_kw

    def discomfort_c(self) -> np.ndarray:
        """Degrees outside the comfort band now (0 inside, and for homes without a thermostat)."""
        p = self.params
        out = np.maximum(p.comfort_low_c - self.temp_c, 0.0) + np.maximum(self.temp_c - p.comfort_high_c, 0.0)
        return np.where(self.owned, out, 0.0)
