"""Home batteries: state of charge, charge/discharge limits and efficiencies, backup reserve.

Stored energy update over a step of dt hours with AC power p (kW, + = charge):
    E' = E + eta_c * max(p, 0) * dt + min(p, 0) / eta_d * dt
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import StorageDevice


@dataclass
class BatteryParams:
    """Per-home arrays (N,); a home without a battery has capacity_kwh = 0 and zero power limits."""

    capacity_kwh: np.ndarray
    max_charge_kw: np.ndarray
    max_discharge_kw: np.ndarray
    charge_efficiency: np.ndarray  # AC -> stored energy, 0..1
    discharge_efficiency: np.ndarray  # stored energy -> AC, 0..1
    soc_min: np.ndarray  # hard lower SoC limit (fraction), physics never goes below
    soc_max: np.ndarray  # hard upper SoC limit (fraction)
    reserve_soc: np.ndarray  # backup reserve the household keeps for outages (fraction); a soft limit
    degradation_cost_per_kwh: np.ndarray  # $ per kWh of AC throughput


class Battery(StorageDevice):
    """All batteries of the fleet as arrays; ``energy_kwh`` is the stored energy."""

    def __init__(self, params: BatteryParams, dt_h: float) -> None:
        self.params = p = params
        self.dt_h = dt_h
        self.owned = p.capacity_kwh > 0
        self.energy_kwh = np.zeros_like(p.capacity_kwh)
        self.energy_max_kwh = p.soc_max * p.capacity_kwh
        self.energy_min_kwh = p.soc_min * p.capacity_kwh
        self.reserve_kwh = p.reserve_soc * p.capacity_kwh
        self._up_kw_per_kwh = 1.0 / (p.charge_efficiency * dt_h)  # stored-energy room -> AC kW
        self._down_kw_per_kwh = p.discharge_efficiency / dt_h
        self._charge_gain = p.charge_efficiency * dt_h
        self._discharge_gain = dt_h / p.discharge_efficiency
        self._inv_capacity = np.divide(1.0, p.capacity_kwh, out=np.zeros_like(p.capacity_kwh), where=self.owned)
        # action range: rated limits, idle by default
        self.p_lo, self.p_default, self.p_hi = -p.max_discharge_kw, np.zeros_like(p.max_charge_kw), p.max_charge_kw

    def reset(self, rng: np.random.Generator) -> None:
        """Start each battery at a random SoC between its reserve and its upper limit."""
        p = self.params
        self.energy_kwh = (rng.uniform(p.reserve_soc, p.soc_max) * p.capacity_kwh).astype(p.capacity_kwh.dtype)

    @property
    def soc(self) -> np.ndarray:
        return self.energy_kwh * self._inv_capacity

    def prepare(self) -> None:
        """Feasible interval for the next step (SoC limits over dt, with efficiencies)."""
        self.p_min, self.p_max = self.feasible_power_with_floor(self.energy_min_kwh)

    def feasible_power_with_floor(self, floor_kwh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(p_min, p_max) kW that keep stored energy in [floor_kwh, soc_max * capacity] over the step.
        The shield passes the backup reserve as the floor."""
        p = self.params
        p_max = np.minimum(p.max_charge_kw, np.maximum(self.energy_max_kwh - self.energy_kwh, 0.0)
                           * self._up_kw_per_kwh)
        p_min = -np.minimum(p.max_discharge_kw, np.maximum(self.energy_kwh - floor_kwh, 0.0) * self._down_kw_per_kwh)
        return p_min, p_max

    def reserve_shortfall_kwh(self) -> np.ndarray:
        """Energy below the backup reserve, kWh (0 where the reserve is kept)."""
        return np.maximum(self.reserve_kwh - self.energy_kwh, 0.0)
