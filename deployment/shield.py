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
(non-finite setpoints become the device default first). The safe setpoints are the point of the safe
box closest to the request that also meets every home's import/export limits and the optional feeder
limit *jointly*: ``p = clip(x - nu - mu_i, lo, hi)``, with one mu per home at a service limit (solved
exactly from the sorted breakpoints) and one nu for the feeder (safeguarded Newton steps over the
per-home projections). Only flexible headroom inside the safe intervals is used, so safety always wins
over a limit that cannot be met. A setpoint that already satisfies all of this is
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
        """Fleet totals per device class (interventions as a count, power moved in kW): one reduction per
        array over the homes (a training env hands one out every step). A plain dict of floats: the step's
        info keeps it for the whole episode, so it must not hold the per-home arrays."""
        interventions = self.intervened.sum(axis=1).tolist()
        moved = self.moved_kw.sum(axis=1, dtype=np.float64).tolist()
        out: dict[str, float] = {}
        for j, name in enumerate(DEVICE_CLASSES):
            out[f"shield/{name}/interventions"] = float(interventions[j])
            out[f"shield/{name}/moved_kw"] = moved[j]
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
        base = fleet.base_load_kw.astype(np.float64)
        up = fleet.layout.site_import_limit_kw - import_margin_kw - base  # most each home's devices may draw
        down = -(fleet.layout.site_export_limit_kw - export_margin_kw) - base  # least (most export)
        safe = self._project_homes(x, lo, hi, up, down)
        limit = self.config.feeder_limit_kw
        if limit is not None and fleet.clocks > 1:
            raise ValueError(f"Shield: the feeder limit ({limit} kW) is for one fleet; this fleet simulates "
                             f"{fleet.clocks} independent fleets (Fleet.clocks)")
        if limit is not None and float(base.sum()) + float(safe.sum()) > limit + TOLERANCE_KW:
            safe = self._project_with_feeder(x, lo, hi, up, down, limit - float(base.sum()))
        moved = np.abs(safe - np.where(nonfinite, 0.0, req))
        moved[nonfinite] = np.abs(safe[nonfinite])
        return ShieldResult(safe, moved, (moved > TOLERANCE_KW) | nonfinite, nonfinite, unreachable)

    # ----- coupling limits --------------------------------------------------------------------
    # The safe point is the minimal-norm one: min ||p - x||^2 over the safe box, each home's service limits
    # (down_i <= sum_d p_di <= up_i) and the feeder limit (sum p <= F) together. Given the feeder's
    # multiplier nu >= 0 the problem splits by home: project x - nu onto the home's box and service slab,
    # which is clip(x - nu - mu_i, lo, hi) with one mu_i per home at a service limit. The fleet total is
    # non-increasing in nu; the smallest nu that meets the feeder limit gives the joint projection (so it
    # is idempotent and never trades one limit for another).
    def _project_homes(self, y: np.ndarray, lo: np.ndarray, hi: np.ndarray, up: np.ndarray,
                       down: np.ndarray) -> np.ndarray:
        """Each home's ``y`` projected onto its safe box and its service slab ``down <= sum <= up``."""
        p = np.clip(y, lo, hi)
        total = p.sum(axis=0)
        for over, target in ((total > up + TOLERANCE_KW, up), (total < down - TOLERANCE_KW, down)):
            idx = np.flatnonzero(over)
            if len(idx):
                p[:, idx] = self._exact_shift_per_home(y[:, idx], lo[:, idx], hi[:, idx], target[idx])
        return p

    def _project_with_feeder(self, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, up: np.ndarray,
                             down: np.ndarray, target: float) -> np.ndarray:
        """The joint projection when the feeder limit binds: the smallest nu >= 0 with fleet total <= target,
        by safeguarded Newton steps on the piecewise-linear total (slope: minus the devices strictly inside
        their bounds in homes not held at a service limit), a bisection bracket keeping every step safe."""
        span = float(np.max(np.abs(x - lo)) + np.max(np.abs(x - hi))) + 1.0
        nu_lo, nu_hi, nu = 0.0, span, 0.0
        p = self._project_homes(x, lo, hi, up, down)
        for _ in range(self.config.bisection_iterations):
            excess = float(p.sum()) - target
            if 0.0 >= excess >= -0.1 * TOLERANCE_KW or (excess <= 0.0 and nu == 0.0):
                break
            if excess > 0:
                nu_lo = nu
            else:
                nu_hi = nu
            y = x - nu
            total = np.clip(y, lo, hi).sum(axis=0)
            free_homes = (total <= up + TOLERANCE_KW) & (total >= down - TOLERANCE_KW)
            slope = int((((y > lo) & (y < hi)) & free_homes).sum())
            step = nu + excess / slope if slope else np.inf
            nu = step if nu_lo < step < nu_hi else 0.5 * (nu_lo + nu_hi)
            p = self._project_homes(x - nu, lo, hi, up, down)
        if float(p.sum()) > target + TOLERANCE_KW:  # not converged: the safe end of the bracket
            p = self._project_homes(x - nu_hi, lo, hi, up, down)
        return p

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
