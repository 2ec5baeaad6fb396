"""The safety shield: any setpoints in, feasible and safe setpoints out, vectorized over the fleet.

For the next step it computes, per device, a *safe interval* inside the physical limits:
    battery       discharge never below the backup reserve (and never beyond SoC limits)
    EV            keep the energy still needed after the step deliverable at full power by departure:
                  charge at least (need - P*eta*(h - dt)) / (eta*dt) once that is positive (charging
                  forced, V2G forbidden); otherwise V2G may discharge at most that slack * eta / dt
    thermostat    the power that keeps T' = free + g*P inside the home's comfort band (forced on/off at
                  the band edges), best effort when the band is out of reach
    water heater  the same for the tank's band
    PV, flex load the physical limits
then clips each setpoint into its interval (non-finite setpoints become the device default first).
Site import/export limits and an optional feeder limit are then met by the minimal-norm change:
``p = clip(x - mu, lo, hi)``, with one mu per violating home (service limits, solved exactly from the
sorted breakpoints) and one for the fleet (feeder, safeguarded Newton steps); only flexible headroom inside the safe intervals is used, so safety
always wins over a limit that cannot be met. A setpoint that already satisfies all of this is
returned unchanged. The shield reads the fleet's state and never mutates it, so the same object runs
in training (``ShieldWrapper``) and in the dispatch loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..envs.devices import DEVICE_CLASSES
from ..envs.fleet import BATTERY, EV, NUM_DEVICE_CLASSES, THERMOSTAT, WATER_HEATER, Fleet

TOLERANCE_KW = 1e-4  # changes smaller than this are rounding, not interventions


@dataclass
class ShieldConfig:
    """:param feeder_limit_kw: fleet import limit (None: no feeder limit).
    :param ev_margin_h: extra hours of full-power charging kept in reserve before departure.
    :param comfort_margin_c: keep temperatures this far inside the bands (degC)."""

    feeder_limit_kw: float | None = None
    ev_margin_h: float = 0.0
    comfort_margin_c: float = 0.0
    bisection_iterations: int = 60  # cap on safeguarded Newton/bisection steps (a few are typical)

    def __post_init__(self) -> None:
        if self.feeder_limit_kw is not None and not 0 < self.feeder_limit_kw < float("inf"):
            raise ValueError(f"ShieldConfig.feeder_limit_kw must be a finite number > 0 kW or None, "
                             f"got {self.feeder_limit_kw}")
        if not 0.0 <= self.ev_margin_h <= 24.0:
            raise ValueError(f"ShieldConfig.ev_margin_h must be in [0, 24] h, got {self.ev_margin_h}")
        if not 0.0 <= self.comfort_margin_c <= 5.0:
            raise ValueError(f"ShieldConfig.comfort_margin_c must be in [0, 5] degC, got {self.comfort_margin_c}")
        if not 5 <= self.bisection_iterations <= 200:
            raise ValueError(f"ShieldConfig.bisection_iterations must be in [5, 200], got {self.bisection_iterations}")


@dataclass
class ShieldResult:
    """Safe setpoints (D, N) kW and what the shield changed.

    ``moved_kw`` (D, N): |safe - requested| per device and home; ``intervened`` (D, N): moved by more
    than rounding; ``nonfinite`` (D, N): requested value was NaN/inf; ``unreachable`` (D, N): the safety
    constraint itself could not be met this step (deadline or comfort band out of reach: best effort).
    """

    setpoints_kw: np.ndarray
    moved_kw: np.ndarray
    intervened: np.ndarray
    nonfinite: np.ndarray
    unreachable: np.ndarray

    def summary(self) -> dict[str, float]:
        """Fleet totals per device class: interventions (count) and power moved (kW)."""
        out: dict[str, float] = {}
        for j, name in enumerate(DEVICE_CLASSES):
            out[f"shield/{name}/interventions"] = float(self.intervened[j].sum())
            out[f"shield/{name}/moved_kw"] = float(self.moved_kw[j].sum(dtype=np.float64))
        out["shield/nonfinite"] = float(self.nonfinite.sum())
        out["shield/unreachable"] = float(self.unreachable.sum())
        return out


class Shield:
    """Projects setpoints onto the safe feasible set of the fleet's next step."""

    def __init__(self, config: ShieldConfig | None = None) -> None:
        self.config = config or ShieldConfig()

    def safe_bounds(self, fleet: Fleet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lo, hi, unreachable), each (D, N): the safe interval of every device for the next step."""
        c = self.config
        p_min, p_max = fleet.feasible_power()
        lo, hi = p_min.astype(np.float64), p_max.astype(np.float64)
        unreachable = np.zeros(lo.shape, dtype=bool)
        dt = fleet.dt_h

        b = fleet.battery
        lo[BATTERY] = np.maximum(lo[BATTERY], b.feasible_power_with_floor(b.reserve_kwh)[0])

        ev = fleet.ev
        eff = ev.params.efficiency
        later_h = np.maximum(ev.hours_to_departure - dt - c.ev_margin_h, 0.0)
        # energy still needed after this step must be deliverable at full power in the time left:
        # charging p adds eff*p*dt, V2G discharge (p < 0) removes |p|*dt/eff
        deficit_kwh = ev.energy_needed_kwh - ev.params.max_charge_kw * eff * later_h
        p_required = np.where(deficit_kwh > 0, deficit_kwh / (eff * dt), deficit_kwh * eff / dt)
        p_required = np.where(ev.connected, p_required, -np.inf)
        unreachable[EV] = p_required > hi[EV] + TOLERANCE_KW
        lo[EV] = np.maximum(lo[EV], np.minimum(p_required, hi[EV]))

        for j, dev in ((THERMOSTAT, fleet.thermostat), (WATER_HEATER, fleet.water_heater)):
            band_lo = dev._comfort_low_c + c.comfort_margin_c
            band_hi = dev._comfort_high_c - c.comfort_margin_c
            p_a = dev.power_for_temperature(band_lo)
            p_b = dev.power_for_temperature(band_hi)
            need_lo, need_hi = np.minimum(p_a, p_b), np.maximum(p_a, p_b)  # order depends on the mode's sign
            owned = dev.owned
            unreachable[j] = owned & ((need_lo > hi[j] + TOLERANCE_KW) | (need_hi < lo[j] - TOLERANCE_KW))
            new_lo = np.clip(need_lo, lo[j], hi[j])
            new_hi = np.clip(need_hi, lo[j], hi[j])
            lo[j] = np.where(owned, new_lo, lo[j])
            hi[j] = np.where(owned, np.maximum(new_hi, new_lo), hi[j])
        return lo, hi, unreachable

    def project(self, fleet: Fleet, setpoints_kw: np.ndarray,
                bounds: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                import_margin_kw: np.ndarray | float = 0.0,
                export_margin_kw: np.ndarray | float = 0.0) -> ShieldResult:
        """Safe setpoints for the fleet's current step; ``setpoints_kw`` is device-major (D, N).
        ``bounds``: (lo, hi, unreachable) to use instead of :meth:`safe_bounds` (e.g. bounds valid for a
        whole interval of believed states under telemetry faults). ``import_margin_kw`` /
        ``export_margin_kw``: per-home headroom to keep inside the service limits (e.g. for devices that
        may fall back to their own control if a command is lost)."""
        req = np.asarray(setpoints_kw, dtype=np.float64)
        if req.shape != (NUM_DEVICE_CLASSES, fleet.n):
            raise ValueError(f"setpoints_kw must have shape (D, N) = ({NUM_DEVICE_CLASSES}, {fleet.n}), got {req.shape}")
        lo, hi, unreachable = self.safe_bounds(fleet) if bounds is None else bounds
        nonfinite = ~np.isfinite(req)
        x = np.where(nonfinite, fleet.action_ranges()[1], req) if nonfinite.any() else req
        safe = np.clip(x, lo, hi)
        safe = self._site_limits(fleet, safe, lo, hi, import_margin_kw, export_margin_kw)
        if self.config.feeder_limit_kw is not None:
            safe = self._feeder_limit(fleet, safe, lo, hi)
        moved = np.abs(safe - np.where(nonfinite, 0.0, req))
        moved[nonfinite] = np.abs(safe[nonfinite])
        return ShieldResult(safe, moved, (moved > TOLERANCE_KW) | nonfinite, nonfinite, unreachable)

    # ----- coupling limits --------------------------------------------------------------------
    def _site_limits(self, fleet: Fleet, p: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                     import_margin_kw: np.ndarray | float = 0.0,
                     export_margin_kw: np.ndarray | float = 0.0) -> np.ndarray:
        base = fleet.base_load_kw.astype(np.float64)
        net = base + p.sum(axis=0)
        imp = fleet.layout.site_import_limit_kw - import_margin_kw
        exp = fleet.layout.site_export_limit_kw - export_margin_kw
        for over, target, at_most in ((net > imp + TOLERANCE_KW, imp - base, True),
                                      (net < -exp - TOLERANCE_KW, -exp - base, False)):
            idx = np.flatnonzero(over)
            if len(idx):
                p[:, idx] = self._exact_shift_per_home(p[:, idx], lo[:, idx], hi[:, idx], target[idx])
        return p

    def _feeder_limit(self, fleet: Fleet, p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        total = float(fleet.base_load_kw.sum(dtype=np.float64) + p.sum())
        limit = self.config.feeder_limit_kw
        if total <= limit + TOLERANCE_KW:
            return p
        target = np.array([limit - float(fleet.base_load_kw.sum(dtype=np.float64))])
        return self._shift_to_total(p.reshape(-1, 1), lo.reshape(-1, 1), hi.reshape(-1, 1), target,
                                    True).reshape(p.shape)

    @staticmethod
    def _exact_shift_per_home(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Exact clip(x - mu, lo, hi) with column sums equal to target (clipped to what the box allows),
        for few rows (devices) and many columns (homes): the sum is piecewise linear in mu with
        breakpoints x - hi and x - lo; evaluate it at every sorted breakpoint and interpolate inside
        the bracketing segment. No iteration."""
        target = np.clip(target, lo.sum(axis=0), hi.sum(axis=0))
        bps = np.sort(np.concatenate([x - hi, x - lo]), axis=0)  # (2D, K)
        sums = np.zeros_like(bps)  # (2D, K): the sum at each breakpoint, non-increasing down the rows
        for d in range(x.shape[0]):  # few devices: add rows instead of reducing a short middle axis
            sums += np.clip(x[d] - bps, lo[d], hi[d])
        m = np.clip((sums > target).sum(axis=0), 1, len(bps) - 1)  # first breakpoint with sum <= target
        cols = np.arange(x.shape[1])
        b0, b1 = bps[m - 1, cols], bps[m, cols]
        s0, s1 = sums[m - 1, cols], sums[m, cols]
        frac = np.where(s0 > s1, (s0 - target) / np.where(s0 > s1, s0 - s1, 1.0), 0.0)
        mu = np.where(target >= sums[0], bps[0], b0 + np.clip(frac, 0.0, 1.0) * (b1 - b0))
        return np.clip(x - mu, lo, hi)

    def _shift_to_total(self, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, target: np.ndarray,
                        at_most: bool) -> np.ndarray:
        """Per column k: the point closest to x[:, k] in the box [lo, hi] whose sum is target[k] (or as
        close as the box allows): clip(x - mu, lo, hi). The sum is piecewise linear and non-increasing
        in mu, with slope -(number of entries strictly inside their bounds), so Newton steps land on
        the root in a few iterations; a bisection bracket keeps every step safe. The result ends on the
        side where the sum is <= target (``at_most``) or >= target, within TOLERANCE_KW."""
        lo_sum, hi_sum = lo.sum(axis=0), hi.sum(axis=0)
        target = np.clip(target, lo_sum, hi_sum)
        at_corner = (target <= lo_sum + 0.1 * TOLERANCE_KW) | (target >= hi_sum - 0.1 * TOLERANCE_KW)
        if at_corner.all():  # the limit takes every device to the end of its safe interval
            return np.where(target <= lo_sum + 0.1 * TOLERANCE_KW, lo, hi)
        span = np.maximum(np.abs(x - lo).max(axis=0), np.abs(x - hi).max(axis=0)) + 1.0
        mu_lo, mu_hi = -span, span
        mu = np.zeros_like(target)
        for _ in range(self.config.bisection_iterations):
            y = x - mu
            excess = np.clip(y, lo, hi).sum(axis=0) - target
            if np.all(np.abs(excess) <= 0.1 * TOLERANCE_KW):
                break
            mu_lo = np.where(excess > 0, mu, mu_lo)
            mu_hi = np.where(excess > 0, mu_hi, mu)
            slope = ((y > lo) & (y < hi)).sum(axis=0)
            newton = mu + excess / np.maximum(slope, 1)
            inside = (newton > mu_lo) & (newton < mu_hi) & (slope > 0)
            mu = np.where(inside, newton, 0.5 * (mu_lo + mu_hi))
        p = np.clip(x - mu, lo, hi)
        excess = p.sum(axis=0) - target
        wrong_side = excess > TOLERANCE_KW if at_most else excess < -TOLERANCE_KW
        if wrong_side.any():  # not converged for some columns: take the safe end of the bracket
            safe_mu = mu_hi if at_most else mu_lo
            p[:, wrong_side] = np.clip(x[:, wrong_side] - safe_mu[wrong_side], lo[:, wrong_side], hi[:, wrong_side])
        return p
