"""EV chargers with sessions (arrival, departure, energy required); smart charging (V1G) and V2G.

Sessions come from the profile channels: the charger sees an EV when ``ev_connected`` is 1.
At plug-in the EV's energy and target are set from the session's arrival and target SoC; at
unplug the energy still missing to the target is the EV-deadline cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class EvChargerParams:
    """Per-home arrays (N,); homes without a charger have max_charge_kw = 0."""

    max_charge_kw: np.ndarray
    max_discharge_kw: np.ndarray  # V2G export limit (0 for V1G-only chargers)
    efficiency: np.ndarray  # AC -> EV battery (and EV battery -> AC for V2G), 0..1
    v2g_min_soc: np.ndarray  # V2G never discharges the EV below this SoC (fraction)


class EvCharger:
    """All chargers of the fleet. Energy figures are in the EV battery (kWh)."""

    def __init__(self, params: EvChargerParams) -> None:
        self.params = params
        self.owned = params.max_charge_kw > 0
        n = len(params.max_charge_kw)
        self.connected = np.zeros(n, dtype=bool)
        self.energy_kwh = np.zeros(n)
        self.target_kwh = np.zeros(n)
        self.capacity_kwh = np.zeros(n)
        self.hours_to_departure = np.zeros(n)
        self.required_kwh = np.zeros(n)  # energy the session asked for at arrival

    def reset(self, rng: np.random.Generator) -> None:
        self.connected[:] = False
        self.energy_kwh[:] = 0.0
        self.target_kwh[:] = 0.0
        self.capacity_kwh[:] = 0.0
        self.required_kwh[:] = 0.0

    def update_sessions(self, connected: np.ndarray, hours_to_departure: np.ndarray, capacity_kwh: np.ndarray,
                        arrival_soc: np.ndarray, target_soc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start and end sessions from this step's profile values.

        Returns (unmet_kwh, departed): energy short of the target for EVs that left, and the mask.
        """
        now = connected & self.owned
        departed = self.connected & ~now
        arrived = now & ~self.connected
        unmet = np.where(departed, np.maximum(self.target_kwh - self.energy_kwh, 0.0), 0.0)
        if arrived.any():
            self.capacity_kwh = np.where(arrived, capacity_kwh, self.capacity_kwh)
            self.energy_kwh = np.where(arrived, arrival_soc * capacity_kwh, self.energy_kwh)
            self.target_kwh = np.where(arrived, np.maximum(target_soc, arrival_soc) * capacity_kwh, self.target_kwh)
            self.required_kwh = np.where(arrived, self.target_kwh - self.energy_kwh, self.required_kwh)
        self.connected = now
        self.hours_to_departure = np.where(now, hours_to_departure, 0.0)
        return unmet, departed

    @property
    def energy_needed_kwh(self) -> np.ndarray:
        """Energy still to deliver to reach the target (0 when unplugged)."""
        return np.where(self.connected, np.maximum(self.target_kwh - self.energy_kwh, 0.0), 0.0)

    def feasible_power(self, dt_h: float) -> tuple[np.ndarray, np.ndarray]:
        """(p_min, p_max) kW: charger limits, EV battery full / V2G floor, zero when unplugged."""
        p = self.params
        eff = p.efficiency
        room_up = np.maximum(self.capacity_kwh - self.energy_kwh, 0.0)
        room_down = np.maximum(self.energy_kwh - p.v2g_min_soc * self.capacity_kwh, 0.0)
        p_max = np.where(self.connected, np.minimum(p.max_charge_kw, room_up / (eff * dt_h)), 0.0)
        p_min = np.where(self.connected, -np.minimum(p.max_discharge_kw, room_down * eff / dt_h), 0.0)
        return p_min, p_max

    def default_power(self, dt_h: float) -> np.ndarray:
        """Uncontrolled charging: full power from arrival until the target is reached."""
        return np.minimum(self.params.max_charge_kw, self.energy_needed_kwh / (self.params.efficiency * dt_h))

    def action_range(self, dt_h: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = self.connected
        p = self.params
        return (np.where(c, -p.max_discharge_kw, 0.0), self.default_power(dt_h), np.where(c, p.max_charge_kw, 0.0))

    def step(self, p_kw: np.ndarray, dt_h: float) -> np.ndarray:
        p_min, p_max = self.feasible_power(dt_h)
        p_kw = np.clip(p_kw, p_min, p_max)
        eff = self.params.efficiency
        self.energy_kwh += np.where(p_kw > 0.0, p_kw * eff, p_kw / eff) * dt_h
        return p_kw
