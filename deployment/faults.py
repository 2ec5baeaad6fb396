"""Communication faults in simulation, and a shield that stays safe on what it last knew.

``CommFaultWrapper`` sits on ``VppEnv`` and makes the controller's view of the fleet imperfect, per device
class (battery, EV, thermostat, water heater: the states safety depends on):
    telemetry_drop         probability a reading is lost this step
    telemetry_delay_steps  readings arrive this many steps late
    spoof                  probability a reading is replaced by a forged one: out of physical range, or
                           inconsistent with the last state (a jump no device could make). A forgery that
                           is physically plausible cannot be told from a reading: that needs authenticated
                           telemetry (the dispatch loop's job), not a filter.
    command_drop           probability a command is lost: the device runs its own control this step
    command_delay_steps    commands reach the device this many steps late ...
    command_ttl_steps      ... and are applied only if no older than this (an expiry, as OCPP charging
                           profiles and OpenADR events carry); None applies late commands anyway
A ``TelemetryEstimator`` accepts a reading only if it is physically plausible (inside the device's range
and no further from the last good reading than the device can move in the elapsed time) and otherwise
keeps the last good one; the believed state is an interval that widens with the reading's age at the
device's maximum drift rate. The shield computes its safe bounds at both ends of that interval and
keeps their intersection (every constraint is monotone in the state, so it is safe for the whole
interval); where the intersection is empty or a reading is older than ``max_age_steps``, control is
released to the device's own controller, which knows its true local state. Policies see the believed
state in their observations, so they can be trained under these faults.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from ..envs.devices import map_action
from ..envs.fleet import BATTERY, EV, NUM_DEVICE_CLASSES, THERMOSTAT, WATER_HEATER, Fleet
from ..envs.observation import BASE_GLOBAL_FEATURES, HOME_FEATURES, site_power_scale_kw
from ..envs.vpp_env import VppEnv
from .shield import Shield

STATEFUL = {"battery": BATTERY, "ev": EV, "thermostat": THERMOSTAT, "water_heater": WATER_HEATER}


@dataclass
class DeviceFaults:
    telemetry_drop: float = 0.0
    telemetry_delay_steps: int = 0
    spoof: float = 0.0
    command_drop: float = 0.0
    command_delay_steps: int = 0
    command_ttl_steps: int | None = None

    def __post_init__(self) -> None:
        for name in ("telemetry_drop", "spoof", "command_drop"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"DeviceFaults.{name} must be a probability in [0, 1], got {v!r}")
        for name in ("telemetry_delay_steps", "command_delay_steps"):
            v = getattr(self, name)
            if not 0 <= v <= 1000:
                raise ValueError(f"DeviceFaults.{name} must be in [0, 1000] steps, got {v!r}")
        if self.command_ttl_steps is not None and self.command_ttl_steps < 0:
            raise ValueError(f"DeviceFaults.command_ttl_steps must be >= 0 or None, got {self.command_ttl_steps!r}")


@dataclass
class FaultConfig:
    """Faults per device class (keys of ``STATEFUL``); ``max_age_steps``: older telemetry releases control."""

    devices: dict[str, DeviceFaults] = field(default_factory=dict)
    max_age_steps: int = 8

    def __post_init__(self) -> None:
        unknown = set(self.devices) - set(STATEFUL)
        if unknown:
            raise ValueError(f"FaultConfig.devices: unknown device classes {sorted(unknown)}; choose from {sorted(STATEFUL)}")
        self.devices = {k: v if isinstance(v, DeviceFaults) else DeviceFaults(**v) for k, v in self.devices.items()}
        if not 1 <= self.max_age_steps <= 10_000:
            raise ValueError(f"FaultConfig.max_age_steps must be in [1, 10000], got {self.max_age_steps}")

    def of(self, device: str) -> DeviceFaults:
        return self.devices.get(device, DeviceFaults())


def _true_state(fleet: Fleet, device: str) -> np.ndarray:
    return {"battery": fleet.battery.energy_kwh, "ev": fleet.ev.energy_kwh, "thermostat": fleet.thermostat.temp_c,
            "water_heater": fleet.water_heater.temp_c}[device].astype(np.float64)


def _physical_range(fleet: Fleet, device: str) -> tuple[np.ndarray, np.ndarray]:
    n = fleet.n
    if device == "battery":
        return np.zeros(n), fleet.battery.params.capacity_kwh.astype(np.float64)
    if device == "ev":
        return np.zeros(n), np.maximum(fleet.ev.capacity_kwh.astype(np.float64), 0.0)
    if device == "thermostat":
        return np.full(n, -10.0), np.full(n, 50.0)
    return np.full(n, 0.0), fleet.water_heater.params.max_temp_c.astype(np.float64)


def _max_drift_per_step(fleet: Fleet, device: str) -> np.ndarray:
    """How far the state can physically move in one step (a generous bound)."""
    dt = fleet.dt_h
    if device == "battery":
        p = fleet.battery.params
        return np.maximum(p.max_charge_kw * p.charge_efficiency, p.max_discharge_kw / p.discharge_efficiency) * dt
    if device == "ev":
        p = fleet.ev.params
        return np.maximum(p.max_charge_kw * p.efficiency, p.max_discharge_kw / p.efficiency) * dt
    if device == "thermostat":
        th = fleet.thermostat
        return (1.0 - th.decay) * 40.0 + np.abs(th.gain_c_per_kw) * th.params.heat_pump_kw + 0.5
    wh = fleet.water_heater  # a full-tank draw can drop it to the inlet temperature
    return np.maximum(wh.params.max_temp_c - wh.params.inlet_c, wh.gain_c_per_kw * wh.params.element_kw)


class TelemetryEstimator:
    """Last plausible reading and its time, per home, for one device class (clock in steps)."""

    def __init__(self, fleet: Fleet, device: str) -> None:
        self.device = device
        self.last_good = _true_state(fleet, device)
        self.good_time = np.zeros(fleet.n, dtype=np.int64)
        self.clock = 0
        self.rejected = 0

    @property
    def age(self) -> np.ndarray:
        return self.clock - self.good_time

    def tick(self) -> None:
        self.clock += 1

    def rebaseline(self, homes: np.ndarray, values: np.ndarray) -> None:
        """A reliable event reset the state now (an EV plugged in: its charger reports the car's SoC)."""
        self.last_good = np.where(homes, values, self.last_good)
        self.good_time = np.where(homes, self.clock, self.good_time)

    def update(self, fleet: Fleet, reading: np.ndarray, received: np.ndarray, reading_age: int) -> None:
        """Take readings that are newer than the last good one and physically plausible."""
        lo, hi = _physical_range(fleet, self.device)
        drift = _max_drift_per_step(fleet, self.device)
        reading_time = self.clock - reading_age
        elapsed = np.abs(reading_time - self.good_time)
        consistent = np.abs(reading - self.last_good) <= 1.01 * drift * elapsed + 1e-3  # float32 slack
        plausible = (reading >= lo - 1e-6) & (reading <= hi + 1e-6) & consistent
        newer = reading_time > self.good_time
        take = received & newer & plausible
        self.rejected += int((received & newer & ~plausible).sum())
        self.last_good = np.where(take, reading, self.last_good)
        self.good_time = np.where(take, reading_time, self.good_time)

    def interval(self, fleet: Fleet) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = _physical_range(fleet, self.device)
        spread = _max_drift_per_step(fleet, self.device) * self.age
        return np.clip(self.last_good - spread, lo, hi), np.clip(self.last_good + spread, lo, hi)


def set_device_states(fleet: Fleet, states: dict[str, np.ndarray]) -> None:
    """Put device ``states`` into the fleet (see ``Fleet.set_device_states``)."""
    fleet.set_device_states(states)


def believed_safe_bounds(shield: Shield, fleet: Fleet, intervals: dict[str, tuple[np.ndarray, np.ndarray]]):
    """Safe bounds valid for every state in the believed intervals: (lo, hi, conflict (D, N))."""
    true = {d: _true_state(fleet, d) for d in intervals}
    bounds = []
    for end in (0, 1):
        set_device_states(fleet, {d: iv[end] for d, iv in intervals.items()})
        bounds.append(shield.safe_bounds(fleet)[:2])
    set_device_states(fleet, true)
    lo = np.maximum(bounds[0][0], bounds[1][0])
    hi = np.minimum(bounds[0][1], bounds[1][1])
    return lo, hi, lo > hi + 1e-6


class CommFaultWrapper(gym.Wrapper):
    """Telemetry and command faults around ``VppEnv``, with the shield working on believed state."""

    def __init__(self, env: gym.Env, faults: FaultConfig, shield: Shield | None = None, seed: int = 0) -> None:
        super().__init__(env)
        if not isinstance(env.unwrapped, VppEnv) or env is not env.unwrapped:
            raise TypeError("CommFaultWrapper must wrap a VppEnv directly (it steps the env with setpoints)")
        self.faults = faults
        self.shield = shield or Shield()
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self._col = {name: j for j, name in enumerate(HOME_FEATURES)}
        self._aggregate_col = BASE_GLOBAL_FEATURES.index("aggregate_kw_per_home/5")

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """``reset(seed=s)`` also re-seeds the faults (from the wrapper's ``seed`` and ``s``), so the same
        seed and actions give the same trajectory, faults included (Gymnasium's reproducibility rule)."""
        if seed is not None:
            self.rng = np.random.default_rng([self.seed, seed])
        obs, info = self.env.reset(seed=seed, options=options)
        fleet = self.env.unwrapped.fleet
        self.estimators = {d: TelemetryEstimator(fleet, d) for d in STATEFUL}
        self._history = {d: deque(maxlen=self.faults.of(d).telemetry_delay_steps + 1) for d in STATEFUL}
        self._commands: deque = deque(maxlen=max(f.command_delay_steps for f in
                                                 [self.faults.of(d) for d in STATEFUL]) + 1)
        self.stats = {"telemetry_lost": 0, "telemetry_rejected": 0, "commands_lost": 0, "commands_expired": 0,
                      "released_to_local_control": 0}
        self._net_seen = fleet.net_kw.astype(np.float64).copy()
        self._read_telemetry(fleet, tick=False)
        return self.believed_observation(obs), info

    # ----- telemetry --------------------------------------------------------------------------
    def _read_telemetry(self, fleet: Fleet, tick: bool = True) -> None:
        for device, est in self.estimators.items():
            if tick:
                est.tick()
            f = self.faults.of(device)
            self._history[device].append(_true_state(fleet, device))
            reading = self._history[device][0].copy()
            age = len(self._history[device]) - 1
            received = self.rng.random(fleet.n) >= f.telemetry_drop
            forged = received & (self.rng.random(fleet.n) < f.spoof)
            if forged.any():  # half out of physical range, half an impossible jump from the true state
                lo, hi = _physical_range(fleet, device)
                jump = 10.0 * _max_drift_per_step(fleet, device) + 1.0
                fake = np.where(self.rng.random(fleet.n) < 0.5, hi + 1000.0, reading + jump)
                reading = np.where(forged, fake, reading)
            self.stats["telemetry_lost"] += int((~received).sum())
            before = est.rejected
            if device == "ev":
                est.rebaseline(fleet.ev.arrived, _true_state(fleet, "ev"))
            est.update(fleet, reading, received, age)
            self.stats["telemetry_rejected"] += est.rejected - before

    def _believed(self, fleet: Fleet):
        """A context in which the fleet's device states are the believed ones (restored after)."""
        wrapper = self

        class _Belief:
            def __enter__(self):
                self.true = {d: _true_state(fleet, d) for d in STATEFUL}
                set_device_states(fleet, {d: est.last_good for d, est in wrapper.estimators.items()})
                return fleet

            def __exit__(self, *exc):
                set_device_states(fleet, self.true)
                return False

        return _Belief()

    def believed_setpoints(self, action: np.ndarray) -> np.ndarray:
        """(D, N) kW the dispatcher commands for a default-relative action: mapped with the ranges its
        believed device states imply (before the step's truth is revealed)."""
        fleet = self.env.unwrapped.fleet
        with self._believed(fleet):
            a = fleet.sanitize_action(action)
            lo, de, hi = fleet.action_ranges()
            return np.stack([map_action(a[j], lo[j], de[j], hi[j]) for j in range(NUM_DEVICE_CLASSES)]).astype(
                np.float64)

    def believed_observation(self, obs: np.ndarray) -> np.ndarray:
        """The observation as the dispatcher can build it: every state-derived feature (SoC, temperatures,
        thermal reach, own-control power, EV energy needed) from the believed state, and the metered net load
        of the last step only where that home's telemetry arrived (else its last reading)."""
        vpp: VppEnv = self.env.unwrapped
        f, n, width = vpp.fleet, vpp.n, len(HOME_FEATURES)
        with self._believed(f):
            believed = vpp.agent_observations()
        fresh = np.min([est.age for est in self.estimators.values()], axis=0) == 0
        self._net_seen = np.where(fresh, f.net_kw, self._net_seen)
        believed[:, self._col["net_kw_last/site_kw"]] = self._net_seen / site_power_scale_kw(f.layout)
        home = obs[: n * width].reshape(n, width)
        home[:] = believed[:, :width]
        obs[n * width + self._aggregate_col] = float(self._net_seen.sum()) / n / 5.0
        return obs

    # ----- step -------------------------------------------------------------------------------
    def step(self, action: np.ndarray):
        vpp: VppEnv = self.env.unwrapped
        fleet = vpp.fleet
        requested = self.believed_setpoints(action)
        fleet.reveal()  # the shield runs where the devices are: the step's true conditions, believed states
        intervals = {d: est.interval(fleet) for d, est in self.estimators.items()}
        lo, hi, conflict = believed_safe_bounds(self.shield, fleet, intervals)
        stale = np.zeros_like(conflict)
        for device, est in self.estimators.items():
            stale[STATEFUL[device]] = est.age > self.faults.max_age_steps
        release = conflict | stale
        # released devices run their own control: pin them at that power while the coupling limits are met
        default = fleet.action_ranges()[1].astype(np.float64)
        lo, hi = np.where(release, default, lo), np.where(release, default, hi)
        # a device that loses its command falls back to its own control: keep service headroom for that
        rise, fall = np.zeros(fleet.n), np.zeros(fleet.n)
        for device, j in STATEFUL.items():
            if self.faults.of(device).command_drop > 0:
                rise += np.maximum(default[j] - lo[j], 0.0)
                fall += np.maximum(hi[j] - default[j], 0.0)
        result = self.shield.project(fleet, requested, bounds=(lo, hi, np.zeros_like(release)),
                                     import_margin_kw=rise, export_margin_kw=fall)
        commanded = np.where(release, np.nan, result.setpoints_kw)  # NaN = no command: own control
        self.stats["released_to_local_control"] += int(release.sum())
        applied = self._deliver(fleet, commanded)
        # NaN: no command reached the device, which runs its own control under the step's true conditions
        obs, reward, terminated, truncated, info = vpp.step_setpoints(applied)
        self._read_telemetry(fleet)
        info["comm_faults"] = dict(self.stats)
        return self.believed_observation(obs), reward, terminated, truncated, info

    def _deliver(self, fleet: Fleet, commanded: np.ndarray) -> np.ndarray:
        """What reaches each device this step: a (possibly late) command, or NaN for none."""
        self._commands.append(commanded)
        out = np.full((NUM_DEVICE_CLASSES, fleet.n), np.nan)
        for device, j in STATEFUL.items():
            f = self.faults.of(device)
            delay = min(f.command_delay_steps, len(self._commands) - 1)
            late = self._commands[-1 - delay][j]
            if f.command_ttl_steps is not None and delay > f.command_ttl_steps:
                self.stats["commands_expired"] += int(np.isfinite(late).sum())
                late = np.full(fleet.n, np.nan)
            lost = self.rng.random(fleet.n) < f.command_drop
            self.stats["commands_lost"] += int((lost & np.isfinite(late)).sum())
            out[j] = np.where(lost, np.nan, late)
        for j in range(NUM_DEVICE_CLASSES):  # stateless devices (PV, flex): delivered as sent
            if j not in STATEFUL.values():
                out[j] = commanded[j]
        return out
