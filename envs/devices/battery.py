"""Home batteries: state of charge, charge/discharge limits and efficiencies, backup reserve."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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


class Battery:
    """All batteries of the fleet as arrays; ``energy_kwh`` is the stored energy."""

    def __init__(self, params: BatteryParams) -> None:
        self.params = params
        self.owned = params.capacity_kwh > 0
        self.energy_kwh = np.zeros_like(params.capacity_kwh)

    def reset(self, rng: np.random.Generator) -> None:
        """Start each battery at a random SoC between its reserve and its upper limit."""
        p = self.params
        soc = rng.uniform(p.reserve_soc, p.soc_max)
        self.energy_kwh = soc * p.capacity_kwh

    @property
    def soc(self) -> np.ndarray:
        return np.divide(self.energy_kwh, self.params.capacity_kwh, out=np.zeros_like(self.energy_kwh),
                         where=self.owned)

    def action_range(self, dt_h: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(p_lo, p_default, p_hi) kW for action mapping: rated limits, idle by default."""
        p = self.params
        return -p.max_discharge_kw, np.zeros_like(p.max_charge_kw), p.max_charge_kw

    def feasible_power(self, dt_h: float, soc_floor: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(p_min, p_max) kW that keep SoC within [soc_floor or soc_min, soc_max] over the next step."""
        p = self.params
        floor = p.soc_min if soc_floor is None else np.maximum(soc_floor, p.soc_min)
        room_up = np.maximum(p.soc_max * p.capacity_kwh - self.energy_kwh, 0.0)
        room_down = np.maximum(self.energy_kwh - floor * p.capacity_kwh, 0.0)
        p_max = np.minimum(p.max_charge_kw, room_up / (p.charge_efficiency * dt_h))
        p_min = -np.minimum(p.max_discharge_kw, room_down * p.discharge_efficiency / dt_h)
        return p_min, p_max

    def step(self, p_kw: np.ndarray, dt_h: float) -> np.ndarray:
        """Apply AC power (clamped to what is physically possible); return the power delivered."""
        p_min, p_max = self.feasible_power(dt_h)
        p_kw = np.clip(p_kw, p_min, p_max)
        p = self.params
        self.energy_kwh += np.where(p_kw > 0.0, p_kw * p.charge_efficiency, p_kw / p.discharge_efficiency) * dt_h
        return p_kw

    def reserve_shortfall_kwh(self) -> np.ndarray:
        """Energy below the backup reserve, kWh (0 where the reserve is kept)."""
        return np.maximum(self.params.reserve_soc * self.params.capacity_kwh - self.energy_kwh, 0.0)
