"""Home batteries: state of charge, charge/discharge limits and efficiencies, backup reserve.

Stored energy update over a step of dt hours with AC power p (kW, + = charge):
    E' = E + eta_c * max(p, 0) * dt + min(p, 0) / eta_d * dt

A battery loaded from a CityLearn dataset may carry CityLearn's richer model (``BatteryCurves``):
the power limit falls with SoC (capacity-power curve), the round-trip efficiency depends on the power
(power-efficiency curve, applied as its square root each way, found by CityLearn's two fixed-point
iterations), stored energy decays by a standby loss each hour, and usable capacity fades with
throughput. Without curves the update above holds exactly (and costs nothing extra).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import StorageDevice


@dataclass
class BatteryCurves:
    """CityLearn's battery model, per home; breakpoints as (N, K) arrays (same K for every home).

    ``power_soc``/``power_frac``: maximum |AC power| as a fraction of ``nominal_kw`` at each SoC.
    ``efficiency_power``/``efficiency``: round-trip efficiency at |AC power| / ``nominal_kw``.
    ``standby_loss_per_h``: fraction of the stored energy lost per hour.
    ``capacity_loss_coefficient``: capacity lost per kWh of throughput, CityLearn's
    ``coefficient * capacity * |energy| / (2 * degraded capacity)`` per step.
    """

    nominal_kw: np.ndarray
    power_soc: np.ndarray
    power_frac: np.ndarray
    efficiency_power: np.ndarray
    efficiency: np.ndarray
    standby_loss_per_h: np.ndarray
    capacity_loss_coefficient: np.ndarray


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
    initial_soc: np.ndarray | None = None  # SoC at every episode start; None (or NaN per home) = random
    curves: BatteryCurves | None = None  # CityLearn's model (see the module docstring)


def interp_rows(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Row-wise linear interpolation: ``np.interp(x[i], xp[i], fp[i])`` for every row i, in one pass
    (xp increasing along each row; x clipped to each row's range, as CityLearn's curves are read)."""
    x = np.clip(x, xp[:, 0], xp[:, -1])
    k = np.clip((xp < x[:, None]).sum(axis=1) - 1, 0, xp.shape[1] - 2)
    rows = np.arange(len(x))
    x0, x1 = xp[rows, k], xp[rows, k + 1]
    y0, y1 = fp[rows, k], fp[rows, k + 1]
    span = np.where(x1 > x0, x1 - x0, 1.0)
    return y0 + (x - x0) * (y1 - y0) / span


@dataclass
class LinearBattery:
    """Constant-efficiency battery terms for a linear program; with CityLearn's curves, the most optimistic
    ones (highest efficiency, highest power limit), so an LP on them bounds what the curved battery can do
    from above. ``keep_per_step``: the fraction of stored energy left after a step's standby loss (exact)."""

    charge_efficiency: np.ndarray
    discharge_efficiency: np.ndarray
    max_charge_kw: np.ndarray
    max_discharge_kw: np.ndarray
    keep_per_step: np.ndarray


def linear_battery(params: BatteryParams, dt_h: float) -> LinearBattery:
    """The battery as a linear program sees it (see :class:`LinearBattery`)."""
    p = params
    f64 = lambda a: np.asarray(a, dtype=np.float64)
    c = p.curves
    if c is None:
        return LinearBattery(f64(p.charge_efficiency), f64(p.discharge_efficiency), f64(p.max_charge_kw),
                             f64(p.max_discharge_kw), np.ones(len(p.capacity_kwh)))
    eta = np.sqrt(f64(c.efficiency).max(axis=1))
    frac = f64(c.power_frac).max(axis=1)
    return LinearBattery(eta, eta.copy(), np.minimum(f64(p.max_charge_kw), f64(c.nominal_kw) * frac),
                         np.minimum(f64(p.max_discharge_kw), f64(c.nominal_kw) * frac),
                         1.0 - f64(c.standby_loss_per_h) * dt_h)


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
        self.degraded_capacity_kwh = p.capacity_kwh.copy()

    def reset(self, rng: np.random.Generator) -> None:
        """Start each battery at its ``initial_soc`` where given, else at a random SoC between its reserve
        and its upper limit (drawn for every home, so giving some homes an initial SoC changes no other draw)."""
        p = self.params
        soc = rng.uniform(p.reserve_soc, p.soc_max)
        if p.initial_soc is not None:
            soc = np.where(np.isfinite(p.initial_soc), p.initial_soc, soc)
        self.energy_kwh = (soc * p.capacity_kwh).astype(p.capacity_kwh.dtype)
        self.degraded_capacity_kwh = p.capacity_kwh.copy()

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
        if p.curves is not None:
            return (-self._curved_limit(-np.asarray(p.max_discharge_kw, np.float64), floor_kwh),
                    self._curved_limit(np.asarray(p.max_charge_kw, np.float64), floor_kwh))
        p_max = np.minimum(p.max_charge_kw, np.maximum(self.energy_max_kwh - self.energy_kwh, 0.0)
                           * self._up_kw_per_kwh)
        p_min = -np.minimum(p.max_discharge_kw, np.maximum(self.energy_kwh - floor_kwh, 0.0) * self._down_kw_per_kwh)
        return p_min, p_max

    def step(self, p_kw: np.ndarray) -> np.ndarray:
        if self.params.curves is None:
            return super().step(p_kw)
        # CityLearn limits the request itself (its iteration depends on it): clip to the rated range only
        return self._curved_step(np.clip(p_kw, self.p_lo, self.p_hi))

    def reserve_shortfall_kwh(self) -> np.ndarray:
        """Energy below the backup reserve, kWh (0 where the reserve is kept)."""
        return np.maximum(self.reserve_kwh - self.energy_kwh, 0.0)

    # ----- CityLearn's model ---------------------------------------------------------------------
    def _curved_limit(self, request_kw: np.ndarray, floor_kwh: np.ndarray) -> np.ndarray:
        """|AC power| (kW) CityLearn's battery delivers for a request (+ charge, - discharge)."""
        return self._curved_limit_and_efficiency(request_kw, floor_kwh)[0]

    def _curved_limit_and_efficiency(self, request_kw: np.ndarray,
                                     floor_kwh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(|AC power| kW, one-way efficiency) as CityLearn's battery finds them: the capacity-power limit
        at the current SoC, then twice: efficiency at the power found so far, room to the degraded capacity
        (charging) or to the floor (discharging) at that efficiency. The efficiency applied is the last one
        computed (at the power before the last limit), as in CityLearn."""
        c = self.params.curves
        dt = self.dt_h
        energy = self.energy_kwh.astype(np.float64)
        soc = energy * self._inv_capacity
        rated = c.nominal_kw * interp_rows(soc, c.power_soc, c.power_frac)
        charging = request_kw >= 0
        limit = np.minimum(np.abs(request_kw), rated)
        room = np.where(charging, np.maximum(self.degraded_capacity_kwh - energy, 0.0),
                        np.maximum(energy - floor_kwh, 0.0))
        for _ in range(2):
            eta = np.sqrt(self._efficiency_at(limit))
            room_kw = np.where(charging, room / np.maximum(eta, 1e-9), room * eta) / dt
            limit = np.minimum(np.minimum(np.abs(request_kw), rated), room_kw)
        return limit, eta

    def _efficiency_at(self, power_kw: np.ndarray) -> np.ndarray:
        c = self.params.curves
        nominal = np.maximum(c.nominal_kw, 1e-9)
        return interp_rows(np.minimum(np.abs(power_kw) / nominal, 1.0), c.efficiency_power, c.efficiency)

    def _curved_step(self, p_kw: np.ndarray) -> np.ndarray:
        """Apply a request within this step's limits as CityLearn does; return the AC power delivered."""
        c = self.params.curves
        dt = self.dt_h
        energy = self.energy_kwh.astype(np.float64)
        limit, eta = self._curved_limit_and_efficiency(p_kw.astype(np.float64), self.energy_min_kwh)
        charging = p_kw >= 0
        # the room was measured to the degraded capacity; the cap is the nominal one (CityLearn's _charge)
        target = np.where(charging, np.minimum(energy + limit * dt * eta, self.params.capacity_kwh),
                          np.maximum(energy - limit * dt / np.maximum(eta, 1e-9), self.energy_min_kwh))
        delta = target - energy
        ac_kwh = np.where(delta >= 0, delta / np.maximum(eta, 1e-9), delta * eta)
        fade = c.capacity_loss_coefficient * self.params.capacity_kwh * np.abs(ac_kwh) / np.maximum(
            2.0 * self.degraded_capacity_kwh, 1e-9)
        self.degraded_capacity_kwh = np.maximum(self.degraded_capacity_kwh - fade, 0.0)
        kept = np.maximum(target * (1.0 - c.standby_loss_per_h * dt), self.energy_min_kwh)
        self.energy_kwh = np.where(self.owned, kept, 0.0).astype(self.energy_kwh.dtype)
        return (ac_kwh / dt).astype(p_kw.dtype)
