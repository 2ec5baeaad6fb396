"""The fleet simulator: all homes, all device classes, one vectorized step.

Internally everything is device-major, (D, N) arrays (struct of arrays): reductions over the
device axis are then row additions. Policies see home-major actions and observations.
A step is split in three so the shield (and the dispatch loop) can sit in the middle:
``begin_step()`` reads the exogenous inputs and updates sessions/draws, ``setpoints_from_action``
turns a default-relative action into kW setpoints, ``apply`` runs the physics and the costs.
Between ``begin_step`` and the action, the fleet holds what a dispatcher believes about the step
(forecast load, PV, draw and weather; see ``envs.forecast``): observations, rules and MPC read that.
``setpoints_from_action`` (or ``apply``) reveals the truth: the action is executed relative to each
device's own control under the true conditions, and the shield and the physics run on them.

Clocks: a fleet of ``clocks`` = K > 1 is K independent fleets of N / K homes each (contiguous blocks of homes)
simulated in one vectorized pass, each with its own clock (start time) and data offsets, all stepping together.
Small fleets then pay the numpy overhead of a step once, not once per fleet. Everything that depends on the
time gains a leading clock axis: ``start_s`` and ``seconds`` (K,), ``grid`` (K, G), ``grid_at_steps`` (..., K, G),
``price_outlook`` (..., K); with one clock they keep their scalar / (G,) shapes. ``per_home`` expands a per-clock
value to the homes and ``clock_sums`` reduces per-home values per clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.profiles import G, H, Profiles, for_resolution
from .devices import (
    DEVICE_CLASSES,
    Battery,
    EvCharger,
    FlexLoad,
    Solar,
    Thermostat,
    WaterHeater,
    map_action,
)
from .fleet_builder import DTYPE, FleetLayout
from .forecast import Forecaster, ForecastConfig

NUM_DEVICE_CLASSES = len(DEVICE_CLASSES)
BATTERY, EV, PV, WATER_HEATER, THERMOSTAT, FLEX = range(NUM_DEVICE_CLASSES)

#: Per-home constraint costs reported every step (kWh, degC*h, kWh*h).
COST_NAMES: tuple[str, ...] = (
    "thermal_discomfort_degh", "dhw_discomfort_degh", "ev_unmet_kwh", "battery_reserve_kwh_h",
    "site_limit_kwh", "power_limit_kwh", "flex_unserved_kwh",
)


@dataclass
class ActionStats:
    """How many action entries were not finite (treated as 0) or outside [-1, 1] (clipped)."""

    nonfinite: int = 0
    clipped: int = 0


@dataclass
class StepOutcome:
    """What one step produced. Arrays are (N,) unless noted; powers in kW, energies in kWh."""

    net_kw: np.ndarray
    default_net_kw: np.ndarray  # what the homes would have drawn with every device left to itself
    device_kw: np.ndarray  # (D, N) power delivered per device class (device-major)
    costs: dict[str, np.ndarray]
    degradation_cost: np.ndarray  # $ battery wear this step
    pv_curtailed_kwh: np.ndarray
    ev_required_kwh_departed: float | np.ndarray  # energy asked for by sessions that ended this step; (K,) per clock
    grid: np.ndarray  # grid signals (see GRID_CHANNELS) during the step; (K, G) with K clocks
    seconds: int | np.ndarray  # seconds since the profiles' row 0 at the start of the step; (K,) with K clocks


class Fleet:
    """N homes sharing K profiles; see the module docstring for the step protocol."""

    def __init__(self, profiles: Profiles, layout: FleetLayout, dt_s: int, forecaster: Forecaster | None = None,
                 clocks: int = 1) -> None:
        """:param clocks: K independent fleets of N / K homes, each with its own clock (see the module docstring)."""
        self.profiles = for_resolution(profiles, dt_s)
        self.layout = layout
        self.dt_s = int(dt_s)
        self.dt_h = dt_s / 3600.0
        self.n = layout.num_homes
        if not (isinstance(clocks, (int, np.integer)) and 1 <= clocks <= self.n and self.n % clocks == 0):
            raise ValueError(f"Fleet: clocks must be a whole number in [1, {self.n}] that divides the {self.n} "
                             f"homes, got {clocks!r}")
        self.clocks = int(clocks)
        self.clock_of_home = np.repeat(np.arange(self.clocks), self.n // self.clocks)  # (N,) contiguous blocks
        p = self.profiles
        if layout.profile_index.max(initial=0) >= p.num_profiles:
            raise ValueError(f"layout.profile_index refers to profile {layout.profile_index.max()}, "
                             f"but only {p.num_profiles} profiles exist")
        self._table = p.home.reshape(-1, p.home.shape[2])  # (T*K, C) float32, time-major, shared
        self._profile = layout.profile_index.astype(np.int64)
        self._shift = (layout.shift_s.astype(np.int64) // p.dt_s) % p.num_rows
        self._draw_scale = (layout.load_scale * min(1.0, dt_s / p.dt_s)).astype(DTYPE)
        self.battery = Battery(layout.battery, self.dt_h)
        self.ev = EvCharger(layout.ev, self.dt_h)
        self.pv = Solar(layout.pv_kwp * layout.pv_derate, self.dt_h)  # kW per kWp of the orientation delivered
        self.water_heater = WaterHeater(layout.water_heater, self.dt_h)
        self.thermostat = Thermostat(layout.thermostat, self.dt_h)
        self.flex = FlexLoad(layout.flex_load, self.dt_h)
        self.owned = np.stack([d.owned for d in self.devices])  # (D, N)
        self.default_net_kw = np.zeros(self.n, DTYPE)
        self._range_buffer = np.zeros((3, NUM_DEVICE_CLASSES, self.n), DTYPE)
        self.start_s: int | np.ndarray = 0 if self.clocks == 1 else np.zeros(self.clocks, np.int64)
        self.t = 0
        self.base_load_kw = np.zeros(self.n, DTYPE)
        self.grid = np.zeros(len(G)) if self.clocks == 1 else np.zeros((self.clocks, len(G)))
        self.net_kw = np.zeros(self.n, DTYPE)
        self.action_stats = ActionStats()
        self._ranges: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._ev_unmet = np.zeros(self.n, DTYPE)
        self._ev_required_departed = 0.0
        self.last_outcome: StepOutcome | None = None
        self.forecaster = forecaster or Forecaster()
        self.steps_per_day = max(1, round(86400 / self.dt_s))
        self._truth: tuple[np.ndarray, np.ndarray] | None = None
        self._previous: tuple[int, tuple[np.ndarray, np.ndarray]] | None = None
        self._believed = False

    @property
    def devices(self) -> tuple:
        """Device objects in action-column order (see DEVICE_CLASSES)."""
        return (self.battery, self.ev, self.pv, self.water_heater, self.thermostat, self.flex)

    # ----- time -------------------------------------------------------------------------------
    @property
    def seconds(self) -> int | np.ndarray:
        """Seconds since the profiles' row 0 at the start of the current step ((K,) with K clocks)."""
        return self.start_s + self.t * self.dt_s

    @property
    def row(self) -> int | np.ndarray:
        return (self.seconds // self.profiles.dt_s) % self.profiles.num_rows

    def per_home(self, value):
        """A per-clock value ((K, ...) with K clocks) for every home ((N, ...)); a scalar (one clock, or one value
        for every clock) as is."""
        return value if self.clocks == 1 or np.ndim(value) == 0 else np.asarray(value)[self.clock_of_home]

    def clock_sums(self, per_home: np.ndarray):
        """Sum of a per-home array over each clock's homes, in float64: a float with one clock, else (K,)."""
        if self.clocks == 1:
            return float(per_home.sum(dtype=np.float64))
        return per_home.reshape(self.clocks, -1).sum(axis=1, dtype=np.float64)

    def reset(self, rng: np.random.Generator, start_s: int | np.ndarray) -> None:
        """Randomise device states and put the clock(s) at ``start_s`` seconds into the profiles (one value per
        clock, or one for all)."""
        if self.clocks == 1:
            self.start_s = int(np.asarray(start_s).reshape(-1)[0]) if np.ndim(start_s) else int(start_s)
        else:
            self.start_s = np.broadcast_to(np.asarray(start_s, dtype=np.int64), (self.clocks,)).copy()
        self.t = 0
        for device in self.devices:
            device.reset(rng)
        self.net_kw = np.zeros(self.n, DTYPE)
        self.action_stats = ActionStats()
        self._previous = None
        self.begin_step(episode_start=True)

    # ----- step protocol ----------------------------------------------------------------------
    def grid_at(self, step: int) -> np.ndarray:
        """Grid signals (G,) ((K, G) with K clocks) of episode step ``step`` (public: tariff, weather, carbon)."""
        return self.grid_at_steps(np.asarray(step))

    def grid_at_steps(self, steps: np.ndarray) -> np.ndarray:
        """Grid signals (..., G) of an array of episode steps ((..., K, G) with K clocks), in one lookup."""
        p = self.profiles
        steps = np.asarray(steps, dtype=np.int64)
        if self.clocks > 1:
            steps = steps[..., None]
        return p.grid[((self.start_s + steps * self.dt_s) // p.dt_s) % p.num_rows]

    def exogenous(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(channels (C, N) float32, grid (G,)) that episode step ``step`` reads: a pure function of
        the step (no state changes), shared by the simulator and the planners (oracle, MPC).
        Per-home scaling is not applied here; see :meth:`scaled_inputs`. With K clocks the grid is (K, G)."""
        p = self.profiles
        seconds = self.start_s + step * self.dt_s
        clock_row = (seconds // p.dt_s) % p.num_rows
        row = self.per_home(clock_row)
        idx = (self._shift + row) % p.num_rows
        idx *= p.num_profiles
        idx += self._profile
        ch = np.ascontiguousarray(np.take(self._table, idx, axis=0).T)
        # PV follows the (unshifted) weather that drives it: only load-like channels carry the home's shift
        ch[H["pv_kw_per_kwp"]] = self._table[row * p.num_profiles + self._profile, H["pv_kw_per_kwp"]]
        return ch, p.grid[clock_row]

    def exogenous_channels(self, step: int, channels: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`exogenous` for a few channels only: ((len(channels), N), grid (G,) or (K, G)), one small gather (the
        forecaster's look back a day, on the hot path)."""
        p = self.profiles
        clock_row = ((self.start_s + step * self.dt_s) // p.dt_s) % p.num_rows
        row = self.per_home(clock_row)
        shifted = ((self._shift + row) % p.num_rows) * p.num_profiles + self._profile
        unshifted = row * p.num_profiles + self._profile
        out = np.empty((len(channels), self.n), self._table.dtype)
        for k, c in enumerate(channels):  # a handful of channels, each one vectorized gather over the fleet
            out[k] = self._table[unshifted if c == H["pv_kw_per_kwp"] else shifted, c]
        return out, p.grid[clock_row]

    def scaled_inputs(self, step: int) -> dict[str, np.ndarray]:
        """Per-home exogenous inputs of episode step ``step`` in physical units (kW, litres, h)."""
        ch, grid = self.exogenous(step)
        elapsed_h = self.per_home(((self.start_s + step * self.dt_s) % self.profiles.dt_s) / 3600.0)
        return {
            "base_load_kw": self.layout.load_scale * ch[H["base_load_kw"]],
            "pv_available_kw": self.pv.kwp * ch[H["pv_kw_per_kwp"]],
            "dhw_draw_l": self._draw_scale * ch[H["dhw_draw_l"]],
            "flex_baseline_kw": self.flex.params.scale_kw * ch[H["flex_load_kw"]],
            "ev_connected": (ch[H["ev_connected"]] > 0) & self.ev.owned,
            "ev_available": np.where(self.ev.owned, ch[H["ev_connected"]], 0.0),  # share of the step plugged in
            "ev_hours_to_departure": ch[H["ev_hours_to_departure"]] - elapsed_h,
            "ev_capacity_kwh": ch[H["ev_capacity_kwh"]],
            "ev_arrival_soc": ch[H["ev_arrival_soc"]],
            "ev_target_soc": ch[H["ev_target_soc"]],
            "grid": grid,
        }

    def price_outlook(self, steps_ahead: np.ndarray) -> np.ndarray:
        """Import prices the dispatcher expects ``steps_ahead`` (>= 0) steps from now: the tariff itself when
        it is published ahead, else the forecaster's method from past prices only (``persistence``: the last
        completed step's; ``seasonal_naive``: the same time on the latest day already past). (..., K) with K clocks."""
        ahead = np.asarray(steps_ahead, dtype=np.int64)
        method = self.forecaster.config.prices
        if method == "published":
            steps = self.t + ahead
        elif method == "persistence":
            steps = np.full_like(ahead, self.t - 1)
        else:
            day = self.steps_per_day
            steps = self.t + ahead - day * ((ahead + day) // day)
        return self.grid_at_steps(steps)[..., G["price_import"]]

    def mean_price(self) -> float | np.ndarray:
        """The typical import price a dispatcher knows: the published tariff's mean over the data, or the mean
        of the past week's prices (per clock: (K,) with K clocks)."""
        if self.forecaster.config.prices == "published":
            return float(self.profiles.grid_channel("price_import").mean())
        week = self.grid_at_steps(self.t - 1 - np.arange(7 * self.steps_per_day))[..., G["price_import"]]
        return float(week.mean()) if self.clocks == 1 else week.mean(axis=0)

    def simulate_own_control(self, start_s: int, steps: int, rng: np.random.Generator) -> np.ndarray:
        """Metered net load (steps, N) kW of these homes left to their own control for ``steps`` steps from
        ``start_s``: the history a customer baseline is computed from. Runs on a second fleet over the same
        data and layout (and clocks); this fleet's state is untouched."""
        shadow = Fleet(self.profiles, self.layout, self.dt_s, Forecaster(ForecastConfig.perfect()), self.clocks)
        shadow.reset(rng, start_s)
        out = np.empty((steps, self.n))
        for k in range(steps):
            out[k] = shadow.apply(shadow.action_ranges()[1]).net_kw
        return out

    def set_forecaster(self, forecaster: Forecaster) -> None:
        """Use another forecaster from the next step on (e.g. perfect foresight for the oracle)."""
        self.forecaster = forecaster

    def begin_step(self, episode_start: bool = False) -> None:
        """Read this step's inputs and set up the decision: EV sessions (known at the step start) and the
        flexible load schedule from the data; load, PV, hot-water draw and weather as the forecaster
        believes them (see ``envs.forecast``). ``apply`` reveals the truth before the physics runs."""
        p = self.profiles
        truth = self.exogenous(self.t)
        ch = truth[0]
        elapsed_h = self.per_home((self.seconds % p.dt_s) / 3600.0)
        self._ev_unmet, departed = self.ev.update_sessions(
            ch[H["ev_connected"]], ch[H["ev_hours_to_departure"]] - elapsed_h, ch[H["ev_capacity_kwh"]],
            ch[H["ev_arrival_soc"]], ch[H["ev_target_soc"]], episode_start)
        if self.clocks == 1:
            self._ev_required_departed = float(self.ev.required_kwh[departed].sum()) if departed.any() else 0.0
        else:  # per fleet
            self._ev_required_departed = self.clock_sums(np.where(departed, self.ev.required_kwh, 0.0))
        self.flex.update(ch[H["flex_load_kw"]])
        belief = self.forecaster.believe(self._past, self.t, self.steps_per_day, truth)
        self._truth, self._believed = truth, belief is not truth
        self._previous = (self.t, truth)
        self._set_inputs(*belief)
        for device in self.devices:
            device.prepare()
        self._ranges = None
        self.action_ranges()

    def _past(self, step: int, channels: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """True inputs (``channels`` only) of an earlier step (the last one is kept from its own step)."""
        if self._previous is not None and self._previous[0] == step:
            ch, grid = self._previous[1]
            return ch[list(channels)], grid
        return self.exogenous_channels(step, channels)

    def _set_inputs(self, ch: np.ndarray, grid: np.ndarray) -> None:
        """Load, PV, weather and hot-water draw of this step into the fleet and its devices."""
        self.grid = grid
        self.base_load_kw = self.layout.load_scale * ch[H["base_load_kw"]]
        self.pv.update(ch[H["pv_kw_per_kwp"]])
        self._update_weather(grid)
        self.water_heater.update(self._draw_scale * ch[H["dhw_draw_l"]])

    def _update_weather(self, grid: np.ndarray) -> None:
        """The thermostats' weather: one outdoor temperature and irradiance for all (one clock) or per home."""
        if self.clocks == 1:
            self.thermostat.update(float(grid[G["outdoor_temp_c"]]), float(grid[G["ghi_w_m2"]]))
        else:
            weather = grid[:, [G["outdoor_temp_c"], G["ghi_w_m2"]]][self.clock_of_home]
            self.thermostat.update(weather[:, 0], weather[:, 1])

    def reveal(self) -> None:
        """Replace this step's believed inputs by the true ones (the physics and the tasks' baselines
        run on the truth)."""
        if not self._believed:
            return
        self._set_inputs(*self._truth)
        for device in (self.pv, self.water_heater, self.thermostat):
            device.prepare()
        self._believed = False
        self._ranges = None
        self.action_ranges()

    def pending_ev_unmet(self) -> np.ndarray:
        """Unmet kWh of EVs that left at the start of the current step (reported with the next
        step's outcome; an episode that ends now reports it itself)."""
        return self._ev_unmet

    def pending_ev_required(self) -> float | np.ndarray:
        return self._ev_required_departed

    def action_ranges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(p_lo, p_default, p_hi), each (D, N) kW, for this step: what actions -1, 0, +1 map to.
        Computed once per step into a reused buffer: copy them to keep them past the step."""
        if self._ranges is None:
            r = self._range_buffer
            for j, device in enumerate(self.devices):
                r[0, j], r[1, j], r[2, j] = device.action_range()
            self._ranges = (r[0], r[1], r[2])
            default_net = self.base_load_kw.copy()
            for j in range(NUM_DEVICE_CLASSES):
                default_net += r[1, j]
            self.default_net_kw = default_net
        return self._ranges

    def feasible_power(self) -> tuple[np.ndarray, np.ndarray]:
        """(p_min, p_max), each (D, N) kW: the hard physical limits for this step (what the
        physics will clamp a setpoint to); the shield narrows them further (reserve, comfort, deadlines)."""
        lo, hi = zip(*(d.feasible_power() for d in self.devices))
        return np.stack(lo), np.stack(hi)

    def sanitize_action(self, action: np.ndarray) -> np.ndarray:
        """Home-major action (N*D,) or (N, D) -> device-major (D, N) in [-1, 1].

        NaN/inf entries become 0 (the device's own behaviour), others are clipped to [-1, 1];
        both are counted in ``action_stats``. Any other shape (a transposed (D, N) array, a scalar)
        raises ValueError: its entries would land on the wrong homes and devices.
        """
        a = np.asarray(action)
        if a.shape not in ((self.n * NUM_DEVICE_CLASSES,), (self.n, NUM_DEVICE_CLASSES)):
            raise ValueError(f"action must have shape ({self.n * NUM_DEVICE_CLASSES},) or ({self.n}, "
                             f"{NUM_DEVICE_CLASSES}) (homes x device classes {DEVICE_CLASSES}, home-major), "
                             f"got shape {a.shape}")
        a = np.ascontiguousarray(a.reshape(self.n, NUM_DEVICE_CLASSES).T, dtype=DTYPE)  # one copy
        lo, hi = a.min(), a.max()
        if not (np.isfinite(lo) and np.isfinite(hi)):
            finite = np.isfinite(a)
            self.action_stats.nonfinite += int(a.size - finite.sum())
            a[~finite] = 0.0
            lo, hi = a.min(), a.max()
        if lo < -1.0 or hi > 1.0:
            self.action_stats.clipped += int(np.count_nonzero((a < -1.0) | (a > 1.0)))
            np.clip(a, -1.0, 1.0, out=a)
        return a

    def setpoints_from_action(self, action: np.ndarray) -> np.ndarray:
        """(D, N) kW setpoints from a home-major default-relative action (see devices.base).

        Executed where the devices are: relative to each device's own control under the step's true
        conditions (the policy decided on beliefs; action 0 leaves a device to its own control)."""
        self.reveal()
        lo, de, hi = self.action_ranges()
        a = self.sanitize_action(action)
        for j in range(NUM_DEVICE_CLASSES):  # row by row: (N,) temporaries stay in cache
            a[j] = map_action(a[j], lo[j], de[j], hi[j])
        return a

    def believed_setpoints(self, action: np.ndarray) -> np.ndarray:
        """(D, N) kW setpoints for a home-major default-relative action, mapped with the ranges of the fleet's
        current beliefs (no :meth:`reveal`): what a dispatcher commands, which cannot know the step's truth."""
        lo, de, hi = (r.copy() for r in self.action_ranges())
        a = self.sanitize_action(action).astype(np.float64)
        for j in range(NUM_DEVICE_CLASSES):
            a[j] = map_action(a[j], lo[j], de[j], hi[j])
        return a

    def set_device_states(self, states: dict[str, np.ndarray]) -> None:
        """Put device ``states`` into the fleet (``battery`` / ``ev`` kWh, ``thermostat`` / ``water_heater``
        degC, each (N,)) and recompute this step's limits under the inputs in place (exogenous inputs kept):
        telemetry into the dispatcher's twin, a belief evaluated, or the truth moved in a test. An EV's
        energy is taken only while it is plugged in."""
        unknown = set(states) - {"battery", "ev", "thermostat", "water_heater"}
        if unknown:
            raise ValueError(f"set_device_states: unknown device(s) {sorted(unknown)}; allowed: battery, ev, "
                             "thermostat, water_heater")
        dtype = self.battery.energy_kwh.dtype
        for device, value in states.items():
            arr = np.asarray(value).astype(dtype)
            if arr.shape != (self.n,):
                raise ValueError(f"set_device_states: {device} must have shape ({self.n},), got {arr.shape}")
            if device == "battery":
                self.battery.energy_kwh = arr
            elif device == "ev":
                self.ev.energy_kwh = np.where(self.ev.connected, arr, self.ev.energy_kwh).astype(dtype)
            elif device == "thermostat":
                self.thermostat.temp_c = arr
            else:
                self.water_heater.temp_c = arr
        self._update_weather(self.grid)
        self.water_heater.update(self.water_heater.last_draw_l)
        for dev in self.devices:
            dev.prepare()
        self._ranges = None
        self.action_ranges()

    def apply(self, setpoints_kw: np.ndarray) -> StepOutcome:
        """Run the physics with device-major kW setpoints (D, N), advance the clock, return the outcome.

        Setpoints beyond what a device can physically do are clamped by its physics (and the
        clamped power counted in ``power_limit_kwh``); non-finite setpoints become the default.
        """
        dt_h = self.dt_h
        sp = np.asarray(setpoints_kw, dtype=DTYPE)
        if sp.shape != (NUM_DEVICE_CLASSES, self.n):
            raise ValueError(f"setpoints_kw must have shape (D, N) = ({NUM_DEVICE_CLASSES}, {self.n}), got {sp.shape}")
        self.reveal()
        default = self.action_ranges()[1]
        if not np.isfinite(sp.sum()):
            sp = np.where(np.isfinite(sp), sp, default)
        delivered = np.empty_like(sp)
        net = self.base_load_kw.copy()
        clamped = np.zeros(self.n, DTYPE)
        for j, device in enumerate(self.devices):
            d = device.step(sp[j])
            delivered[j] = d
            net += d
            clamped += np.abs(sp[j] - d)
        default_net = self.default_net_kw
        lay = self.layout
        costs = {
            "thermal_discomfort_degh": self.thermostat.discomfort_c() * dt_h,
            "dhw_discomfort_degh": self.water_heater.discomfort_c() * dt_h,
            "ev_unmet_kwh": self._ev_unmet,
            "battery_reserve_kwh_h": self.battery.reserve_shortfall_kwh() * dt_h,
            "site_limit_kwh": (np.maximum(net - lay.site_import_limit_kw, 0.0)
                               + np.maximum(-net - lay.site_export_limit_kw, 0.0)) * dt_h,
            "power_limit_kwh": clamped * dt_h,
        }
        degradation = np.abs(delivered[BATTERY]) * dt_h * lay.battery.degradation_cost_per_kwh
        curtailed = (delivered[PV] + self.pv.available_kw) * dt_h
        self.net_kw = net
        grid, seconds = self.grid, self.seconds
        self.t += 1
        midnight = self.seconds % 86400 == 0  # each clock's energy-neutral window ends at its own midnight
        if self.clocks == 1:
            costs["flex_unserved_kwh"] = self.flex.settle_window() if midnight else np.zeros(self.n, DTYPE)
        else:
            costs["flex_unserved_kwh"] = (self.flex.settle_window(midnight[self.clock_of_home]) if midnight.any()
                                          else np.zeros(self.n, DTYPE))
        outcome = StepOutcome(net, default_net, delivered, costs, degradation, curtailed, self._ev_required_departed,
                              grid, seconds)
        self.last_outcome = outcome  # for recorders and plots (no copy)
        self.begin_step()
        return outcome
