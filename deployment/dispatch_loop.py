"""The dispatch loop: telemetry -> observation -> policy -> shield -> device commands, every cycle.

The dispatcher keeps a *twin* of the fleet (a ``VppEnv`` with the fleet's registry and data): each cycle it
puts the trusted telemetry into the twin's device states, builds the observation with the same builder and
forecaster as training (``VppEnv.observe``), asks the policy (ONNX in production) within a deadline, maps the
action with the ranges the believed state implies (``Fleet.believed_setpoints``), projects it with the shield
on that state (and the grid operator's limit, which overrides the VPP's own), and sends one absolute,
keyed, expiring command per device, journaled before it leaves (``Journal``). The twin then advances one
step, so a device whose telemetry is missing is believed where the twin predicts it.

Each stage has its own fault boundary, so one failing device or stage never stops the cycle:
* telemetry missing, stale, implausible (``TelemetryGate``): that device gets no command; its last one
  expires within ``ttl_s`` and it returns to its own control (released);
* the policy raises, misses its deadline or returns non-finite actions: the affected homes get action 0,
  their devices' own control, still through the shield;
* the shield raises: every home gets its own-control power (safe by definition: what the devices do alone);
* a device refuses or never answers: logged and counted, the others are unaffected;
* a crash: on restart the journal's pending commands are re-sent with their ids (applied once) or expired.
No setpoint leaves the loop that the shield did not produce or that is not the device's own control.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..agents.policy import Policy
from ..envs.fleet import BATTERY, EV, NUM_DEVICE_CLASSES, PV, THERMOSTAT, WATER_HEATER
from ..envs.vpp_env import VppEnv
from .command_builder import POWER_CLASSES, BuilderConfig, CommandBatch, DeviceSlot, build_batch
from .commands import Command, CommandError, DeviceLink
from .journal import Journal
from .shield import Shield, ShieldConfig
from .telemetry_gate import REASONS, DeviceLimits, GateConfig, TelemetryGate, TelemetryStore

log = logging.getLogger("vpprl.dispatch")

HOLD_LOW = [BATTERY, EV, THERMOSTAT]  # lower bounds only the VPP guards (reserve, departure need, comfort)
HOLD_HIGH = [THERMOSTAT]  # upper bounds only the VPP guards (comfort under an offset)
STATE_OF = {BATTERY: "battery", EV: "ev", WATER_HEATER: "water_heater", THERMOSTAT: "thermostat"}


@dataclass(frozen=True)
class DispatchConfig:
    cadence_s: float = 60.0
    policy_deadline_s: float = 2.0
    io_timeout_s: float = 5.0  # per device read or send
    max_commands_per_device_per_min: int = 6
    builder: BuilderConfig = field(default_factory=BuilderConfig)
    gate: GateConfig = field(default_factory=GateConfig)

    def __post_init__(self) -> None:
        for name, lo, hi in (("cadence_s", 0.1, 3600.0), ("policy_deadline_s", 0.001, 600.0),
                             ("io_timeout_s", 0.01, 600.0)):
            value = getattr(self, name)
            if not (math.isfinite(value) and lo <= value <= hi):
                raise ValueError(f"DispatchConfig.{name} = {value} is outside the allowed range [{lo}, {hi}]")
        if not self.cadence_s < self.builder.ttl_s <= 2.0 * self.cadence_s:
            raise ValueError(f"DispatchConfig.builder.ttl_s ({self.builder.ttl_s}) must be in (cadence_s, 2 x cadence_s]"
                             f" = ({self.cadence_s}, {2 * self.cadence_s}]: longer than a cycle, so every command "
                             "is refreshed before it expires, and as short as that allows, since the shield makes a "
                             "command safe for as long as it lives")
        if not 1 <= self.max_commands_per_device_per_min <= 600:
            raise ValueError("DispatchConfig.max_commands_per_device_per_min must be in [1, 600], got "
                             f"{self.max_commands_per_device_per_min}")


@dataclass
class CycleReport:
    cycle: int
    started_at: float
    latency_s: float = 0.0
    stage_s: dict[str, float] = field(default_factory=dict)
    untrusted: dict[str, str] = field(default_factory=dict)  # device id -> why its telemetry was refused
    released: dict[str, str] = field(default_factory=dict)  # device id -> why it got no command (own control)
    fallback_homes: dict[int, str] = field(default_factory=dict)  # home -> why it got its own control
    sent: int = 0
    acked: int = 0
    refused: dict[str, str] = field(default_factory=dict)  # device id -> reason
    failed: dict[str, str] = field(default_factory=dict)  # device id -> error (unreachable, timeout)
    tracking_error_kw: np.ndarray | None = None  # (M,) power read back - last setpoint (NaN: none)
    shield_failed: str = ""
    policy_failed: str = ""
    limit_shortfall_kw: float = 0.0  # how far the believed fleet import stays above the fleet limit (safety first)
    fleet_kw: float = float("nan")  # the fleet's believed net load under the safe setpoints
    commands: dict[str, Command] = field(default_factory=dict)  # device id -> command sent this cycle


def device_limits(twin: VppEnv, slot: DeviceSlot) -> DeviceLimits:
    """Rated limits of a slot's device, from the twin's fleet parameters."""
    f, i, j = twin.fleet, slot.home, slot.device_class
    if j == BATTERY:
        p = f.battery.params
        cap = float(p.capacity_kwh[i])
        rate = max(float(p.max_charge_kw[i]), float(p.max_discharge_kw[i]) / float(p.discharge_efficiency[i]))
        return DeviceLimits(-float(p.max_discharge_kw[i]), float(p.max_charge_kw[i]), "soc_kwh", 0.0, cap, rate, rate)
    if j == EV:
        p = f.ev.params
        rate = max(float(p.max_charge_kw[i]), float(p.max_discharge_kw[i]) / float(p.efficiency[i]))
        return DeviceLimits(-float(p.max_discharge_kw[i]), float(p.max_charge_kw[i]), "soc_kwh", 0.0, 200.0, rate, rate,
                            state_tolerance=0.5, reports_connection=True)
    if j == WATER_HEATER:
        p = f.water_heater.params
        rise = float(p.element_kw[i]) / float(f.water_heater.heat_capacity_kwh_per_c[i])  # the element's heating
        return DeviceLimits(0.0, float(p.element_kw[i]), "temp_c", 0.0, 100.0, rise)
    if j == THERMOSTAT:
        p = f.thermostat.params
        return DeviceLimits(0.0, float(p.heat_pump_kw[i]), "temp_c", -10.0, 50.0, 20.0, 20.0)
    if j == PV:
        return DeviceLimits(-float(f.pv.kwp[i]), 0.0)
    p = f.flex.params  # a commercial site: its profile may reach a few times its scale, plus the rebound
    return DeviceLimits(-0.0, 4.0 * float(p.scale_kw[i]) + float(p.max_rebound_kw[i]))


class Dispatcher:
    """One fleet's dispatch loop (see the module docstring). ``clock`` gives unix seconds (simulated in tests).
    ``links`` maps every device slot to its protocol link; slot arrays are fixed at construction."""

    def __init__(self, twin: VppEnv, policy: Policy, links: dict[DeviceSlot, DeviceLink], journal: Journal,
                 config: DispatchConfig | None = None, shield: Shield | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.twin, self.policy, self.links, self.journal = twin, policy, links, journal
        self.config = config or DispatchConfig()
        if twin.clocks != 1:
            raise ValueError(f"Dispatcher: the twin simulates {twin.clocks} fleets in one pass (fleet_seeds);"
                             f" a dispatch loop commands one fleet: build the twin without fleet_seeds")
        if abs(self.config.cadence_s - twin.fleet.dt_s) > 1e-9:
            raise ValueError(f"DispatchConfig.cadence_s ({self.config.cadence_s} s) must equal the twin's step dt_s "
                             f"({twin.fleet.dt_s} s): the twin advances one step per cycle")
        self.shield = shield or Shield()
        self.clock = clock
        self.slots = list(links)
        self.home = np.array([s.home for s in self.slots], dtype=np.int64)
        self.device_class = np.array([s.device_class for s in self.slots], dtype=np.int64)
        limits = [device_limits(twin, s) for s in self.slots]
        self.store = TelemetryStore([s.device_id for s in self.slots], [x.state_key for x in limits])
        self.gate = TelemetryGate(limits, self.config.gate)
        self.trusted = np.zeros(len(self.slots), bool)
        self.operator_limit_kw: float | None = None
        self.cycle_no = journal.last_cycle() + 1
        self._sent_times: dict[str, deque] = {}
        self._last_setpoint = np.full(len(self.slots), np.nan)
        self._last_valid_until = np.full(len(self.slots), -np.inf)
        self._policy_pool = ThreadPoolExecutor(1, thread_name_prefix="vpprl-policy")  # never queued behind I/O

    # ----- the grid operator ------------------------------------------------------------------------
    def set_operator_limit(self, limit_kw: float | None) -> None:
        """A fleet import limit from the grid operator; it overrides the VPP's own (the tighter one holds)."""
        if limit_kw is not None and not (math.isfinite(limit_kw) and limit_kw > 0):
            raise ValueError(f"operator limit must be a finite number > 0 kW or None, got {limit_kw}")
        self.operator_limit_kw = limit_kw

    def _effective_shield(self) -> Shield:
        own = self.shield.config.feeder_limit_kw
        if self.operator_limit_kw is None or (own is not None and own <= self.operator_limit_kw):
            return self.shield
        c = self.shield.config
        return Shield(ShieldConfig(self.operator_limit_kw, c.ev_margin_h, c.comfort_margin_c, c.bisection_iterations))

    # ----- recovery ---------------------------------------------------------------------------------
    async def recover(self) -> tuple[int, int]:
        """Re-send the journal's pending commands that have not expired (same ids: applied once), expire the
        rest. Returns (re-sent, expired)."""
        now = self.clock()
        by_id = {slot.device_id: slot for slot in self.slots}
        resent = expired = 0
        outcomes, sends = [], []
        for entry in self.journal.pending():
            c = entry.command
            slot = by_id.get(c.envelope.device_id)
            if slot is None or c.envelope.valid_until <= now:
                outcomes.append((c.envelope.command_id, "expired", "not sent before a restart"))
                expired += 1
                continue
            sends.append(self._send_one(slot, c, CycleReport(entry.cycle, now)))
            resent += 1
        outcomes += await asyncio.gather(*sends)
        self.journal.mark_many(outcomes)
        return resent, expired

    # ----- one cycle --------------------------------------------------------------------------------
    async def cycle(self) -> CycleReport:
        """Read every device, decide, send; returns what happened (never raises for device or policy faults)."""
        t0 = time.perf_counter()
        now = self.clock()
        report = self.begin(now)
        tick = time.perf_counter()
        await self.read_all(report)
        report.stage_s["read"] = time.perf_counter() - tick
        obs = self.observe(now, report)
        tick = time.perf_counter()
        action = await self._decide(obs, report)
        report.stage_s["policy"] = time.perf_counter() - tick
        batch, setpoints = self.commands_for(action, now, report)
        tick = time.perf_counter()
        await self._send_batch(batch, report)
        report.stage_s["send"] = time.perf_counter() - tick
        self.end(report, setpoints)
        report.latency_s = time.perf_counter() - t0
        return report

    async def run(self, cycles: int | None = None, sleep=asyncio.sleep,
                  on_cycle: Callable[[CycleReport], None] | None = None) -> list[CycleReport]:
        """Cycles at a fixed cadence on ``clock``: each starts ``cadence_s`` after the previous one started; a cycle
        that overruns its slot is logged and the next starts at once (never two at a time). ``cycles``: stop
        after that many (None: until cancelled)."""
        reports: list[CycleReport] = []
        next_start = self.clock()
        while cycles is None or len(reports) < cycles:
            report = await self.cycle()
            reports.append(report)
            if on_cycle is not None:
                on_cycle(report)
            next_start += self.config.cadence_s
            wait = next_start - self.clock()
            if wait < 0:
                log.warning("cycle %d overran its %.1f s slot by %.1f s", report.cycle, self.config.cadence_s, -wait)
                next_start = self.clock()
            elif cycles is None or len(reports) < cycles:
                await sleep(wait)
        return reports

    def begin(self, now: float) -> CycleReport:
        if self.twin.fleet.t >= self.twin.episode_steps:
            raise RuntimeError(f"the twin's horizon is over ({self.twin.episode_steps} steps): build it with an "
                               "episode_hours covering the run")
        k = self.cycle_no
        self.cycle_no += 1
        self.journal.start_cycle(k, now)
        self.store.start_cycle()
        return CycleReport(k, now)

    def observe(self, now: float, report: CycleReport) -> np.ndarray:
        """Gate this cycle's readings, put the trusted states into the twin, build the observation."""
        tick = time.perf_counter()
        reason = self.gate.check(self.store, now)
        self.trusted = reason == 0
        ev = self.trusted & (self.device_class == EV)
        other_car = ev & ((self.store.connected == 1.0) != self.twin.fleet.ev.connected[self.home])
        for m in np.flatnonzero(other_car):  # a session the twin does not know: it cannot plan for it, so release
            report.untrusted[self.slots[m].device_id] = "EV plugged state differs from the twin's session"
            report.released[self.slots[m].device_id] = "EV plugged state differs from the twin's session"
        self.trusted &= ~other_car
        for m in np.flatnonzero(~self.trusted):
            why = report.untrusted.setdefault(self.slots[m].device_id, REASONS[reason[m]])
            report.released[self.slots[m].device_id] = f"telemetry not trusted: {why}"
            log.warning("cycle %d: telemetry of %s not trusted: %s", report.cycle, self.slots[m].device_id, why)
        power_class = np.isin(self.device_class, POWER_CLASSES)
        report.tracking_error_kw = np.where(self.trusted & power_class, self.store.power_kw - self._last_setpoint,
                                            np.nan)
        self._put_states()
        obs = self.twin.observe()
        report.stage_s["observation"] = time.perf_counter() - tick
        return obs

    def _put_states(self) -> None:
        fleet = self.twin.fleet
        current = {"battery": fleet.battery.energy_kwh, "ev": fleet.ev.energy_kwh,
                   "water_heater": fleet.water_heater.temp_c, "thermostat": fleet.thermostat.temp_c}
        states = {}
        for j, name in STATE_OF.items():
            take = self.trusted & (self.device_class == j)
            if j == EV:
                take &= self.store.connected >= 0.5
            if take.any():
                states[name] = current[name].copy()
                states[name][self.home[take]] = self.store.state[take]
        if states:
            fleet.set_device_states(states)

    def commands_for(self, action: np.ndarray, now: float, report: CycleReport) -> tuple[CommandBatch, np.ndarray]:
        """Shield the action on the believed state and encode the commands of every trusted device.

        The shield's safe box is made to hold for a command's whole life: where only the VPP guards a limit (a
        battery's backup reserve, an EV's departure need, a home's comfort band under an offset) the bound's
        distance from the device's own control (safe for any time) is scaled by dt / ttl, so a limit met over one
        step is met over ``ttl_s``; what a device guards itself (a full battery, a tank's high-limit cutoff, a
        shed tank's comfort floor) keeps the one-step bound. Devices not commanded this cycle are pinned in the box to what they will do (their
        last command while it lives, else their own control), so the homes' and the operator's limits count
        them. If the shield fails nothing is sent: every device returns to its own control within ``ttl_s``."""
        tick = time.perf_counter()
        fleet = self.twin.fleet
        own = fleet.action_ranges()[1].astype(np.float64).copy()
        p_min, p_max = fleet.feasible_power()
        shield = self._effective_shield()
        try:
            lo, hi, unreachable = (b.copy() for b in shield.safe_bounds(fleet))
            hold = fleet.dt_s / self.config.builder.ttl_s
            lo[HOLD_LOW] = np.where(lo[HOLD_LOW] <= own[HOLD_LOW], own[HOLD_LOW] + (lo[HOLD_LOW] - own[HOLD_LOW]) * hold,
                                    lo[HOLD_LOW])
            hi[HOLD_HIGH] = np.where(hi[HOLD_HIGH] >= own[HOLD_HIGH],
                                     own[HOLD_HIGH] + (hi[HOLD_HIGH] - own[HOLD_HIGH]) * hold, hi[HOLD_HIGH])
            idle = ~self.trusted
            pinned = np.where(self._last_valid_until > now, self._last_setpoint,
                              own[self.device_class, self.home])
            pinned = np.clip(pinned, p_min[self.device_class, self.home], p_max[self.device_class, self.home])
            lo[self.device_class[idle], self.home[idle]] = pinned[idle]
            hi[self.device_class[idle], self.home[idle]] = pinned[idle]
            setpoints = shield.project(fleet, fleet.believed_setpoints(action), bounds=(lo, hi, unreachable)
                                       ).setpoints_kw
            if not np.isfinite(setpoints).all():
                raise FloatingPointError("non-finite safe setpoints")
        except Exception as err:  # noqa: BLE001 - the boundary: any shield failure releases every home
            report.shield_failed = f"{type(err).__name__}: {err}"
            log.error("cycle %d: shield failed (%s); nothing sent, every device returns to its own control",
                      report.cycle, report.shield_failed)
            report.fallback_homes.update({i: "shield failed: released" for i in range(fleet.n)})
            report.released.update({slot.device_id: "shield failed" for slot in self.slots})
            report.stage_s["shield"] = time.perf_counter() - tick
            none = np.zeros(len(self.slots), bool)
            batch = build_batch(self.home, self.device_class, report.cycle, now, own, own, p_min, p_max,
                                fleet.thermostat.gain_c_per_kw, none, self.config.builder)
            return batch, own
        report.stage_s["shield"] = time.perf_counter() - tick
        self._check_operator_limit(setpoints, report)
        tick = time.perf_counter()
        batch = build_batch(self.home, self.device_class, report.cycle, now, setpoints, own, p_min, p_max,
                            fleet.thermostat.gain_c_per_kw, self.trusted, self.config.builder)
        for m in np.flatnonzero(self.trusted & ~batch.ok):
            report.refused[self.slots[m].device_id] = "not sent: setpoint not finite or outside the device's limits"
        self._last_setpoint[batch.ok] = batch.expected_kw[batch.ok]
        self._last_valid_until[batch.ok] = batch.valid_until
        setpoints = setpoints.copy()  # the twin steps with what the devices will draw (CTA-2045's levels, offsets)
        setpoints[self.device_class[batch.ok], self.home[batch.ok]] = batch.expected_kw[batch.ok]
        report.stage_s["encode"] = time.perf_counter() - tick
        return batch, setpoints

    def _check_operator_limit(self, setpoints: np.ndarray, report: CycleReport) -> None:
        total = float(self.twin.fleet.base_load_kw.sum(dtype=np.float64)) + float(setpoints.sum())
        report.fleet_kw = total
        limit = self._effective_shield().config.feeder_limit_kw
        if limit is not None and total > limit + 1e-3:
            report.limit_shortfall_kw = total - limit
            log.error("cycle %d: the fleet limit of %.1f kW cannot be met safely: %.1f kW over", report.cycle, limit,
                      total - limit)

    def end(self, report: CycleReport, setpoints: np.ndarray) -> None:
        """Advance the twin one step (its prediction for devices that go silent) and close the cycle."""
        self.twin.step_setpoints(setpoints)
        self.journal.finish_cycle(report.cycle, self.clock())

    # ----- stages -----------------------------------------------------------------------------------
    async def read_all(self, report: CycleReport) -> None:
        """Read every device concurrently into the telemetry store (failures noted as untrusted)."""
        timeout = self.config.io_timeout_s
        results = await asyncio.gather(*(asyncio.wait_for(self.links[s].read(timeout), timeout) for s in self.slots),
                                       return_exceptions=True)
        for slot, res in zip(self.slots, results):
            if isinstance(res, BaseException):
                report.untrusted[slot.device_id] = f"no telemetry: {type(res).__name__}: {res}"
            elif res.device_id != slot.device_id:
                report.untrusted[slot.device_id] = f"reading names another device ({res.device_id})"
            else:
                try:
                    self.store.update(res)
                except ValueError as err:
                    report.untrusted[slot.device_id] = str(err)

    async def _send_batch(self, batch: CommandBatch, report: CycleReport) -> None:
        sendable = []
        for m in np.flatnonzero(batch.ok):
            slot = self.slots[m]
            command = batch.command(slot, m)
            try:
                command.validate()
            except CommandError as err:
                report.refused[slot.device_id] = f"not sent: {err}"
                continue
            sendable.append((slot, command))
        fresh = {c.envelope.command_id for c in self.journal.record_pending(batch.cycle, [c for _, c in sendable])}
        outcomes = await asyncio.gather(*(self._send_one(slot, c, report) for slot, c in sendable
                                          if c.envelope.command_id in fresh))
        self.journal.mark_many(list(outcomes))  # one transaction per cycle

    async def _decide(self, obs: np.ndarray, report: CycleReport) -> np.ndarray:
        n = self.twin.fleet.n
        zeros = np.zeros((n, NUM_DEVICE_CLASSES), np.float32)
        loop = asyncio.get_running_loop()
        try:
            raw = await asyncio.wait_for(loop.run_in_executor(self._policy_pool, self.policy.act, obs),
                                         self.config.policy_deadline_s)
            action = np.asarray(raw, dtype=np.float32).reshape(n, NUM_DEVICE_CLASSES)
        except Exception as err:  # noqa: BLE001 - the boundary: a failed policy leaves homes to their own control
            why = "deadline missed" if isinstance(err, TimeoutError) else f"{type(err).__name__}: {err}"
            report.policy_failed = why
            report.fallback_homes.update({i: f"policy: {why}" for i in range(n)})
            log.error("cycle %d: policy failed (%s); every home gets its own control", report.cycle, why)
            return zeros
        bad = ~np.isfinite(action).all(axis=1)
        if bad.any():
            action[bad] = 0.0
            report.fallback_homes.update({int(i): "policy: non-finite action" for i in np.flatnonzero(bad)})
            log.warning("cycle %d: non-finite actions for %d homes; their own control", report.cycle, int(bad.sum()))
        return action

    def _rate_ok(self, device_id: str, now: float) -> bool:
        times = self._sent_times.setdefault(device_id, deque())
        while times and times[0] <= now - 60.0:
            times.popleft()
        if len(times) >= self.config.max_commands_per_device_per_min:
            return False
        times.append(now)
        return True

    async def _send_one(self, slot: DeviceSlot, command: Command, report: CycleReport) -> tuple[str, str, str]:
        """Send one command behind its own fault boundary; returns its journal outcome (id, status, reason)."""
        cid = command.envelope.command_id
        if not self._rate_ok(slot.device_id, self.clock()):
            report.refused[slot.device_id] = "dispatcher rate limit"
            return cid, "refused", "dispatcher rate limit"
        try:
            ack = await asyncio.wait_for(self.links[slot].send(command, self.config.io_timeout_s),
                                         self.config.io_timeout_s)
        except Exception as err:  # noqa: BLE001 - the boundary: one device never stops the cycle
            report.failed[slot.device_id] = f"{type(err).__name__}: {err}"
            log.warning("cycle %d: %s unreachable: %s", report.cycle, slot.device_id, err)
            return cid, "failed", f"{type(err).__name__}: {err}"
        report.sent += 1
        report.commands[slot.device_id] = command
        if ack.accepted:
            report.acked += 1
            return cid, "acked", ack.reason
        report.refused[slot.device_id] = ack.reason
        log.warning("cycle %d: %s refused %s: %s", report.cycle, slot.device_id, cid, ack.reason)
        return cid, "refused", ack.reason
