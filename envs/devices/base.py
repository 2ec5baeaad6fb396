"""What every device class shares: the action mapping and the shield-facing interface.

Convention: every power is AC power drawn from the home's meter in kW (positive = consume,
negative = inject). Actions are *default-relative* in [-1, 1]: 0 is what the device does on
its own (thermostat holds setpoint, EV charges on arrival, battery idles, PV is not curtailed),
+1 its highest feasible consumption, -1 its lowest. This matches CTA-2045 shed (-) / load-up (+).
"""

from __future__ import annotations

import numpy as np


def map_action(a: np.ndarray, p_lo: np.ndarray, p_def: np.ndarray, p_hi: np.ndarray) -> np.ndarray:
    """Piecewise-linear map of a in [-1, 1] onto [p_lo, p_def] (a <= 0) and [p_def, p_hi] (a >= 0)."""
    return p_def + a * np.where(a >= 0.0, p_hi - p_def, p_def - p_lo)


def inverse_map_action(p: np.ndarray, p_lo: np.ndarray, p_def: np.ndarray, p_hi: np.ndarray) -> np.ndarray:
    """The action that :func:`map_action` maps to power ``p`` (0 where the range is empty)."""
    up = p_hi - p_def
    down = p_def - p_lo
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(p >= p_def, np.where(up > 1e-12, (p - p_def) / up, 0.0),
                     np.where(down > 1e-12, (p - p_def) / down, 0.0))
    return np.clip(a, -1.0, 1.0)


class Device:
    """Common shape of a device class: ``prepare()`` sets this step's limits as arrays, the
    accessors hand them to the fleet, the shield and the dispatch loop.

    ``p_min``/``p_max``: hard physical limits for the next step (kW). ``p_lo``/``p_default``/``p_hi``:
    what actions -1, 0 and +1 map to.
    """

    p_min: np.ndarray
    p_max: np.ndarray
    p_lo: np.ndarray
    p_default: np.ndarray
    p_hi: np.ndarray

    def reset(self, rng: np.random.Generator) -> None:
        """Randomise the state at the start of an episode (stateless devices: nothing)."""

    def prepare(self) -> None:
        """Compute this step's limits from the state and the exogenous inputs."""

    def feasible_power(self) -> tuple[np.ndarray, np.ndarray]:
        return self.p_min, self.p_max

    def action_range(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.p_lo, self.p_default, self.p_hi


class StorageDevice(Device):
    """A battery-like store: AC power p charges with one gain and discharges with another."""

    energy_kwh: np.ndarray
    _charge_gain: np.ndarray  # stored kWh per kW of charging over the step
    _discharge_gain: np.ndarray  # stored kWh per kW of discharging over the step

    def step(self, p_kw: np.ndarray) -> np.ndarray:
        """Apply AC power clamped to the feasible interval; return the power delivered."""
        p_kw = np.clip(p_kw, self.p_min, self.p_max)
        self.energy_kwh += np.maximum(p_kw, 0.0) * self._charge_gain + np.minimum(p_kw, 0.0) * self._discharge_gain
        return p_kw


class ThermalDevice(Device):
    """A device whose end-of-step temperature is linear in its power: T' = free_temp + gain * P,
    with a comfort band per home."""

    temp_c: np.ndarray
    free_temp_c: np.ndarray
    gain_c_per_kw: np.ndarray
    _owned_f: np.ndarray
    _comfort_low_c: np.ndarray
    _comfort_high_c: np.ndarray

    def step(self, p_kw: np.ndarray) -> np.ndarray:
        p_kw = np.clip(p_kw, self.p_min, self.p_max)
        self.temp_c = self.free_temp_c + self.gain_c_per_kw * p_kw
        return p_kw

    def discomfort_c(self) -> np.ndarray:
        """Degrees outside the comfort band now (0 inside, and for homes without the device)."""
        out = np.maximum(self._comfort_low_c - self.temp_c, 0.0)
        out += np.maximum(self.temp_c - self._comfort_high_c, 0.0)
        out *= self._owned_f
        return out
