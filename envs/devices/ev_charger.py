"""EV chargers with sessions (arrival, departure, energy required); smart charging (V1G) and V2G.

Sessions come from the profile channels: the charger sees an EV when ``ev_connected`` > 0, the share
of the step it is plugged in (1 inside a session; less in a session's partial first and last steps at
a step coarser than the data), which scales what the charger can move in the step. A new session starts
when an EV plugs in, or when the hours to departure jump up (back-to-back sessions). At plug-in the EV's
energy and target are set from the session's arrival and target SoC; at unplug the energy still missing
to the target is the EV-deadline cost. One efficiency applies both ways (AC -> EV battery and back).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import StorageDevice


@dataclass
class EvChargerParams:
    """Per-home arrays (N,); homes without a charger have max_charge_kw = 0."""

    max_charge_kw: np.ndarray
    max_discharge_kw: np.ndarray  # V2G export limit (0 for V1G-only chargers)
    efficiency: np.ndarray  # AC -> EV battery (and EV battery -> AC for V2G), 0..1
    v2g_min_soc: np.ndarray  # V2G never discharges the EV below this SoC (fraction)


class EvCharger(StorageDevice):
    """All chargers of the fleet. Energy figures are in the EV battery (kWh)."""

    def __init__(self, params: EvChargerParams, dt_h: float) -> None:
        self.params = p = params
        self.dt_h = dt_h
        self.owned = p.max_charge_kw > 0
        n = len(p.max_charge_kw)
        self.dtype = dt = p.max_charge_kw.dtype
        self.connected = np.zeros(n, dtype=bool)
        self.available = np.zeros(n, dt)  # share of this step the EV is plugged in
        self.arrived = np.zeros(n, dtype=bool)  # sessions that started this step
        self.energy_kwh = np.zeros(n, dt)
        self.target_kwh = np.zeros(n, dt)
        self.capacity_kwh = np.zeros(n, dt)
        self.v2g_floor_kwh = np.zeros(n, dt)
        self.hours_to_departure = np.zeros(n, dt)
        self.required_kwh = np.zeros(n, dt)  # energy the session asked for at arrival
        self.energy_needed_kwh = np.zeros(n, dt)  # energy still to deliver to reach the target
        self._up_kw_per_kwh = 1.0 / (p.efficiency * dt_h)
        self._down_kw_per_kwh = p.efficiency / dt_h
        self._charge_gain = p.efficiency * dt_h
        self._discharge_gain = dt_h / p.efficiency
        self.p_min = self.p_max = self.p_lo = self.p_default = self.p_hi = np.zeros(n, dt)

    def reset(self, rng: np.random.Generator) -> None:
        for arr in (self.energy_kwh, self.target_kwh, self.capacity_kwh, self.v2g_floor_kwh, self.required_kwh):
            arr[:] = 0.0
        self.connected = np.zeros_like(self.connected)
        self.hours_to_departure = np.zeros_like(self.energy_kwh)

    def update_sessions(self, available: np.ndarray, hours_to_departure: np.ndarray, capacity_kwh: np.ndarray,
                        arrival_soc: np.ndarray, target_soc: np.ndarray,
                        episode_start: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Start and end sessions from this step's profile values (``available``: share of the step plugged in).

        At an episode start, sessions already in progress have been charging since their real arrival:
        they start with at least the energy that keeps their target reachable at full power.
        Returns (unmet_kwh, departed): energy short of the target for EVs that left, and the mask.
        """
        now = (available > 0) & self.owned
        # the same session counts down its hours; a jump up means the next session took the charger
        replaced = now & self.connected & (hours_to_departure > self.hours_to_departure - self.dt_h + 1e-3)
        departed = self.connected & (~now | replaced)
        if departed.any():
            unmet = np.maximum(self.target_kwh - self.energy_kwh, 0.0) * departed
        else:
            unmet = np.zeros(len(now), self.dtype)
        arrived = now & (~self.connected | replaced)
        self.arrived = arrived
        if arrived.any():
            i = np.flatnonzero(arrived)
            cap = capacity_kwh[i].astype(self.dtype)
            soc0 = arrival_soc[i].astype(self.dtype)
            if episode_start:
                deliverable = self.params.max_charge_kw[i] * self.params.efficiency[i] * hours_to_departure[i]
                soc0 = np.maximum(soc0, target_soc[i] - deliverable / np.maximum(cap, 1e-9)).astype(self.dtype)
            self.capacity_kwh[i] = cap
            self.energy_kwh[i] = soc0 * cap
            self.target_kwh[i] = np.maximum(target_soc[i], soc0) * cap
            self.required_kwh[i] = self.target_kwh[i] - self.energy_kwh[i]
            self.v2g_floor_kwh[i] = self.params.v2g_min_soc[i] * cap
        self.connected = now
        self.available = np.where(now, available, 0.0).astype(self.dtype)
        self.hours_to_departure = (hours_to_departure * now).astype(self.dtype)
        return unmet, departed

    def prepare(self) -> None:
        """Feasible interval and action range for the next step (zero when unplugged)."""
        p = self.params
        c = self.connected
        share = self.available  # step-average power limits scale with the share of the step plugged in
        self.energy_needed_kwh = np.maximum(self.target_kwh - self.energy_kwh, 0.0) * c
        self.p_max = np.minimum(p.max_charge_kw * share, np.maximum(self.capacity_kwh - self.energy_kwh, 0.0)
                                * self._up_kw_per_kwh) * c
        self.p_min = np.maximum(-p.max_discharge_kw * share, np.minimum(self.v2g_floor_kwh - self.energy_kwh, 0.0)
                                * self._down_kw_per_kwh) * c
        # uncontrolled charging: full power from arrival until the target is reached
        self.p_default = np.minimum(self.p_max, self.energy_needed_kwh * self._up_kw_per_kwh)
        self.p_lo = -p.max_discharge_kw * share * c
        self.p_hi = p.max_charge_kw * share * c
