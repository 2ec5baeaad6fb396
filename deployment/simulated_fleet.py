"""N simulated homes behind the real device protocols on loopback, built from a twin ``VppEnv``'s fleet.

The dispatch loop needs a world to talk to that is not its own twin: this module starts, per home that owns a
device of a requested class, the protocol simulator of that class with the twin's parameters for that home
and the twin's current device state, and hands back one ``DeviceLink`` per device, keyed by ``DeviceSlot``:

* battery  -> ``SunSpecInverterSim`` (models 1/704/701/702/713), one Modbus TCP server per battery, reached by a
  ``SunSpecLink`` whose allow list holds exactly the simulators' addresses;
* EV       -> ``SimulatedChargePoint`` (OCPP 2.1 by default), all behind one ``Csms`` with security profile 2
  (TLS from a throwaway CA + a per-charger HTTP Basic password held in memory only);
* PV       -> ``SunSpecInverterSim`` kind "pv" (only when asked for: not in the default classes);
* water heater -> ``Cta2045WaterHeaterSim``, one CTA-2045 device (a TCP socket) per tank, ``Cta2045Link``;
* thermostat   -> ``ThermostatVen``, one OpenADR 2.0b VEN per home, all registered with one ``OpenAdrVtn``
  (mutual TLS, signed XML, each VEN enrolled by its certificate fingerprint before it connects).

Device ids are ``home<h>/<class>`` (``home3/battery``); an OCPP identity cannot hold "/", so the charger is
``home3-ev`` on the wire and its link is wrapped to speak the fleet's id.

Time is simulated: ``SimulatedFleet.clock()`` starts at ``start_time`` and moves only with ``step(dt_s)``; the
links that judge expiry or stamp telemetry (SunSpec, CTA-2045, the CSMS and its rate limit) run on it, the
chargers and VENs keep their own clocks, advanced by the same steps. Give the dispatcher the same clock.

Exogenous drivers come from the twin's data (``Fleet.scaled_inputs`` / ``Fleet.exogenous``: the truth, not the
dispatcher's forecast) for the twin step each interval falls in, counted from the twin's step at start:
outdoor temperature and irradiance (thermostats), hot-water draw (tanks; a step's litres shared in proportion
to time when the step is split, by ``step(dt_s)`` shorter than a twin step or by an event ending), PV resource
(PV), EV arrivals and departures (as ``EvCharger.update_sessions`` decides them, applied at the step start;
a charger made stale still reports its plug-in and departure). Held constant, as in the twin: a tank's inlet
and ambient temperatures, a home's internal gains and its occupant setpoint (per-home parameters). Differs
from the twin: an EV plugged in is plugged for the whole step (the twin scales a partial first/last step at
coarse resolutions by the share plugged in), and a battery has no CityLearn curves (a warning says so).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Self

from ..data.profiles import G, H
from ..envs.fleet import BATTERY, EV, FLEX, PV, THERMOSTAT, WATER_HEATER
from ..envs.vpp_env import VppEnv
from .command_builder import DeviceSlot
from .commands import Command, CommandAck, CommandError, DeviceLink, Telemetry
from .protocols.cta2045 import Cta2045Link
from .protocols.ocpp_csms import OCPP21, VERSIONS, Csms, CsmsSecurity, PasswordStore, server_ssl_context
from .protocols.openadr_certs import TestPki
from .protocols.openadr_vtn import OpenAdrLink, OpenAdrVtn, VtnConfig
from .protocols.sunspec_link import AllowList, SunSpecLink
from .simulators.charge_point import ChargePointSpec, SimulatedChargePoint
from .simulators.cta2045_device import Cta2045WaterHeaterSim, WaterHeaterSpec
from .simulators.openadr_ven import HomeParams, ThermostatVen, VenCredentials
from .simulators.sunspec_inverter import BatterySpec, ScaleFactors, SunSpecInverterSim
from .tls_testing import CertificateAuthority, client_ssl_context

log = logging.getLogger("vpprl.simulated_fleet")

CLASS_NAMES: dict[int, str] = {BATTERY: "battery", EV: "ev", PV: "pv", WATER_HEATER: "water_heater",
                               THERMOSTAT: "thermostat"}
SUPPORTED_CLASSES = tuple(CLASS_NAMES)
DEFAULT_CLASSES = (BATTERY, EV, WATER_HEATER, THERMOSTAT)
HOST = "127.0.0.1"
UINT16_MAX = 0xFFFE  # 0xFFFF is SunSpec's "not implemented"
OPENADR_CLOCK_SLACK_S = 60.0  # how far start_time may lag the wall clock when thermostats (OpenADR) run


def device_id_for(home: int, device_class: int) -> str:
    """The fleet's device id of one home's device: ``home<h>/<class name>``."""
    return f"home{home}/{CLASS_NAMES[device_class]}"


def _wh_scale_factor(capacity_kwh: float) -> int:
    """The smallest ``WH_SF`` at which the battery's rating fits model 713's uint16 ``WHRtg`` (1 Wh when it can)."""
    sf = 0
    while capacity_kwh * 1000.0 / 10.0**sf > UINT16_MAX:
        sf += 1
    return sf


class RenamedLink(DeviceLink):
    """A protocol link under the fleet's device id (the protocol's own id differs, e.g. an OCPP identity),
    with telemetry state keys renamed where a protocol names a quantity differently (``state_keys``)."""

    def __init__(self, inner: DeviceLink, device_id: str, state_keys: dict[str, str] | None = None) -> None:
        self.inner, self.device_id = inner, device_id
        self.state_keys = dict(state_keys or {})

    async def send(self, command: Command, timeout_s: float) -> CommandAck:
        env = command.envelope
        if env.device_id != self.device_id:
            raise CommandError(f"envelope.device_id = {env.device_id!r} is not this link's device {self.device_id!r}")
        return await self.inner.send(replace(command, envelope=replace(env, device_id=self.inner.device_id)),
                                     timeout_s)

    async def read(self, timeout_s: float) -> Telemetry:
        t = await self.inner.read(timeout_s)
        state = {self.state_keys.get(k, k): v for k, v in t.state.items()}
        return replace(t, device_id=self.device_id, state=state)

    async def close(self) -> None:
        await self.inner.close()


@dataclass
class _Device:
    """One simulated device: where it sits in the twin, the simulator, the link (what the dispatcher gets)."""

    slot: DeviceSlot
    sim: Any
    link: DeviceLink
    ev_hours_to_departure: float = 0.0  # EV: the session's hours to departure at the last session update


class SimulatedFleet:
    """The running simulators and their links; made by :func:`start_simulated_fleet`.

    ``links``: one ``DeviceLink`` per device. ``step(dt_s)``: advance every simulator (see the module docstring
    for the drivers). ``device(slot)``: the simulator behind a slot, for fault injection (CTA-2045: ``.mute =
    True``; SunSpec: ``await .stop()``; charger: ``await .close()``; VEN: ``await .stop()``; all keep their
    physics running under ``step``). ``set_stale(slot)``: a push device (OCPP, OpenADR) keeps running but
    stops reporting, so its link's last telemetry ages. Delivery failures during a step (a VPP server down, a
    device stopped) never stop the physics: they are logged and kept in ``delivery_errors``."""

    def __init__(self, twin: VppEnv, start_time: float, timeout_s: float) -> None:
        self.twin = twin
        self.start_time = float(start_time)
        self.timeout_s = timeout_s
        self.elapsed_s = 0.0
        self.first_step = int(twin.fleet.t)  # the twin step the simulators start in
        self.step_s = int(twin.fleet.dt_s)
        self._start_s = int(twin.fleet.start_s)
        self._entered = self.first_step  # the twin step whose inputs and sessions are applied
        self._devices: dict[DeviceSlot, _Device] = {}
        self.links: dict[DeviceSlot, DeviceLink] = {}
        self.csms: Csms | None = None
        self.vtn: OpenAdrVtn | None = None
        self.modbus_allow: AllowList | None = None
        self.stale: set[DeviceSlot] = set()
        self.delivery_errors: list[str] = []
        self._servers: list[Any] = []  # CTA-2045 and SunSpec simulators that listen
        self._closed = False

    # ----- time ---------------------------------------------------------------------------------------
    @property
    def now(self) -> float:
        """Simulated unix seconds."""
        return self.start_time + self.elapsed_s

    def clock(self) -> float:
        """Simulated unix seconds (give the dispatcher this clock)."""
        return self.now

    @property
    def step_index(self) -> int:
        """The twin step whose data drives the next interval."""
        return self.first_step + math.floor(self.elapsed_s / self.step_s + 1e-9)

    # ----- lookup -------------------------------------------------------------------------------------
    def slot(self, home: int, device_class: int) -> DeviceSlot:
        """The slot of one home's device (KeyError naming what exists if there is none)."""
        for s in self._devices:
            if s.home == home and s.device_class == device_class:
                return s
        raise KeyError(f"home {home} has no simulated {CLASS_NAMES.get(device_class, device_class)}; simulated: "
                       f"{sorted(s.device_id for s in self._devices)}")

    def slots(self, device_class: int | None = None) -> list[DeviceSlot]:
        """Every slot (of one class), by home."""
        return sorted((s for s in self._devices if device_class is None or s.device_class == device_class),
                      key=lambda s: (s.home, s.device_class))

    def device(self, slot: DeviceSlot) -> Any:
        """The simulator object behind ``slot``."""
        return self._devices[slot].sim

    def set_stale(self, slot: DeviceSlot, stale: bool = True) -> None:
        """Stop (or resume) a push device's telemetry while its physics keeps running."""
        if slot.device_class not in (EV, THERMOSTAT):
            raise ValueError(f"{slot.device_id}: the VPP polls this device, it pushes nothing to withhold; make it "
                             "silent instead (CTA-2045: device(slot).mute = True; SunSpec: await device(slot).stop())")
        (self.stale.add if stale else self.stale.discard)(slot)

    def _add(self, slot: DeviceSlot, sim: Any, link: DeviceLink) -> None:
        self._devices[slot] = _Device(slot, sim, link)
        self.links[slot] = link

    # ----- stepping -----------------------------------------------------------------------------------
    async def step(self, dt_s: float) -> None:
        """Advance every simulator by ``dt_s`` seconds, split at twin-step boundaries so each part runs on its own
        step's data; at a boundary the next step's sessions and inputs apply (as the twin's ``begin_step``)."""
        if self._closed:
            raise RuntimeError("the simulated fleet is closed")
        if not (math.isfinite(dt_s) and 0.0 < dt_s <= 7 * 86400.0):
            raise ValueError(f"dt_s = {dt_s} is outside the allowed range (0, 604800] seconds")
        if int(self.twin.fleet.start_s) != self._start_s:
            raise RuntimeError("the twin was reset since the simulated fleet started (its data clock moved from "
                               f"{self._start_s} s to {self.twin.fleet.start_s} s); start a new simulated fleet")
        left = dt_s
        while left > 1e-9:
            boundary = (self.step_index - self.first_step + 1) * self.step_s - self.elapsed_s
            chunk = min(left, boundary)
            await self._advance(chunk, self.step_index)
            self.elapsed_s += chunk
            left -= chunk
            if self.step_index != self._entered:
                await self._enter(self.step_index)
        await self._report_vens(dt_s)

    async def _advance(self, chunk_s: float, k: int) -> None:
        """Every simulator's physics over ``chunk_s`` seconds of twin step ``k``; chargers report as they step."""
        inputs = self.twin.fleet.scaled_inputs(k)
        share = chunk_s / self.step_s
        pushes = []
        for d in self._devices.values():
            j, h = d.slot.device_class, d.slot.home
            if j in (BATTERY, PV):
                d.sim.step(chunk_s)
            elif j == WATER_HEATER:
                d.sim.step(chunk_s, float(inputs["dhw_draw_l"][h]) * share)
            elif j == THERMOSTAT:
                _step_ven(d.sim, chunk_s)
            elif d.slot in self.stale:
                d.sim.advance(chunk_s)
            else:
                pushes.append(self._deliver(d, d.sim.step(chunk_s, self.timeout_s)))
        await asyncio.gather(*pushes)

    async def _enter(self, k: int) -> None:
        """Apply twin step ``k``'s inputs: weather, PV resource, EV arrivals and departures."""
        f = self.twin.fleet
        inputs = f.scaled_inputs(k)
        ch, grid = f.exogenous(k)
        self._set_weather(grid, ch)
        dt_h = self.step_s / 3600.0
        changes = []
        for d in self._devices.values():
            if d.slot.device_class != EV:
                continue
            h, cp = d.slot.home, d.sim
            here = bool(inputs["ev_available"][h] > 0)
            htd = float(inputs["ev_hours_to_departure"][h])
            replaced = here and cp.plugged and htd > d.ev_hours_to_departure - dt_h + 1e-3
            changes.append(self._deliver(d, self._session(d, cp.plugged and (not here or replaced),
                                                           here and (not cp.plugged or replaced), inputs)))
            d.ev_hours_to_departure = htd if here else 0.0
        await asyncio.gather(*changes)
        self._entered = k

    async def _session(self, d: _Device, leave: bool, arrive: bool, inputs: dict) -> None:
        h, cp = d.slot.home, d.sim
        if leave:
            await cp.unplug(self.timeout_s)
        if arrive:
            await cp.plug_in(float(inputs["ev_capacity_kwh"][h]), min(max(float(inputs["ev_arrival_soc"][h]), 0.0), 1.0),
                             min(max(float(inputs["ev_target_soc"][h]), 0.0), 1.0),
                             min(max(float(inputs["ev_hours_to_departure"][h]), 0.0), 168.0), self.timeout_s)

    def _set_weather(self, grid: Any, ch: Any) -> None:
        for d in self._devices.values():
            if d.slot.device_class == THERMOSTAT:
                d.sim.outdoor_c = float(grid[G["outdoor_temp_c"]])
                d.sim.ghi_w_m2 = float(grid[G["ghi_w_m2"]])
            elif d.slot.device_class == PV:
                d.sim.set_resource(max(float(ch[H["pv_kw_per_kwp"]][d.slot.home]), 0.0))

    async def _report_vens(self, dt_s: float) -> None:
        """Each running VEN reports now and the VTN has it before the step returns."""
        await asyncio.gather(*(self._deliver(d, self._report_one(d, dt_s)) for d in self._devices.values()
                               if d.slot.device_class == THERMOSTAT and d.slot not in self.stale
                               and d.sim.client is not None))

    async def _report_one(self, d: _Device, dt_s: float) -> None:
        link = d.link
        assert isinstance(link, OpenAdrLink)
        before = link.latest()
        after = -math.inf if before is None else before.measured_at + min(dt_s / 2.0, 1e-3)
        await d.sim.report_now(self.timeout_s)
        await link.read_newer_than(after, self.timeout_s)

    async def _deliver(self, d: _Device, work: Any) -> None:
        """Run one device's network part; a failure is recorded, never raised (the physics already ran)."""
        try:
            await work
        except (OSError, TimeoutError, ConnectionError, RuntimeError, asyncio.TimeoutError) as err:
            msg = f"{d.slot.device_id} at t = {self.now:.0f}: {type(err).__name__}: {err}"
            self.delivery_errors.append(msg)
            log.warning("telemetry not delivered: %s", msg)

    # ----- shutdown -----------------------------------------------------------------------------------
    async def close(self) -> None:
        """Stop every client, simulator and server (links first, then devices, then the VPP's servers)."""
        if self._closed:
            return
        self._closed = True
        errors: list[BaseException] = []

        async def each(coros: Iterable[Any]) -> None:
            for r in await asyncio.gather(*coros, return_exceptions=True):
                if isinstance(r, BaseException):
                    errors.append(r)

        await each(asyncio.wait_for(d.link.close(), self.timeout_s) for d in self._devices.values())
        await each(self._stop_ven(d.sim) for d in self._devices.values() if d.slot.device_class == THERMOSTAT)
        await each(asyncio.wait_for(d.sim.close(), self.timeout_s) for d in self._devices.values()
                   if d.slot.device_class == EV)
        servers = [s.stop() for s in self._servers]
        if self.csms is not None:
            servers.append(self.csms.stop())
        if self.vtn is not None:
            servers.append(self.vtn.stop())
        await each(asyncio.wait_for(s, self.timeout_s) for s in servers)
        if errors:
            raise errors[0]

    async def _stop_ven(self, ven: ThermostatVen) -> None:
        """Pause the VEN's poll schedule and let a poll in flight finish before stopping it: APScheduler
        cancels running jobs on shutdown and logs each cancelled poll as a failed job."""
        client = ven.client
        if client is not None and client.scheduler.running:
            client.scheduler.pause()
            running = [f for ex in getattr(client.scheduler, "_executors", {}).values()
                       for f in getattr(ex, "_pending_futures", ()) if not f.done()]
            if running:
                await asyncio.wait(running, timeout=self.timeout_s)
        await asyncio.wait_for(ven.stop(), self.timeout_s)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _step_ven(ven: ThermostatVen, dt_s: float) -> None:
    """Step a VEN split where one of its events starts or ends inside the interval: ``ThermostatVen.step``
    applies the event in force at the interval's start to all of it (the other simulators split themselves)."""
    t_end = ven.now + dt_s
    for b in [*ven.event_boundaries(ven.now, t_end), t_end]:
        ven.step(b - ven.now)


# ----- start-up -----------------------------------------------------------------------------------------
def _check_args(twin: VppEnv, start_time: float, classes: tuple[int, ...], tmp_dir: Path, ocpp_version: str,
                ven_poll_s: float, timeout_s: float) -> None:
    if not hasattr(twin, "fleet"):
        raise TypeError(f"twin must be a VppEnv (after reset), got {type(twin).__name__}")
    if not (math.isfinite(start_time) and 0.0 <= start_time <= 1e11):
        raise ValueError(f"start_time = {start_time} is outside the allowed range [0, 1e11] unix seconds")
    bad = [c for c in classes if c not in SUPPORTED_CLASSES]
    if bad or len(set(classes)) != len(classes):
        allowed = ", ".join(f"{c} ({n})" for c, n in CLASS_NAMES.items())
        raise ValueError(f"classes = {tuple(classes)} must be distinct device classes among {allowed}"
                         + (" (FLEX has no simulated home device)" if FLEX in bad else ""))
    if THERMOSTAT in classes and start_time < time.time() - OPENADR_CLOCK_SLACK_S:
        raise ValueError(f"start_time = {start_time} is more than {OPENADR_CLOCK_SLACK_S:g} s before the wall clock "
                         f"({time.time():.0f}); the OpenADR VTN judges event expiry on the wall clock, so thermostat "
                         "commands would be refused as expired: use start_time >= time.time()")
    if ocpp_version not in VERSIONS:
        raise ValueError(f"ocpp_version = {ocpp_version!r} is not one of {VERSIONS}")
    if not (math.isfinite(ven_poll_s) and 0.05 <= ven_poll_s <= 60.0):
        raise ValueError(f"ven_poll_s = {ven_poll_s} is outside the allowed range [0.05, 60] seconds")
    if not (math.isfinite(timeout_s) and 0.1 <= timeout_s <= 600.0):
        raise ValueError(f"timeout_s = {timeout_s} is outside the allowed range [0.1, 600] seconds")
    if not isinstance(tmp_dir, Path):
        raise TypeError(f"tmp_dir must be a pathlib.Path, got {type(tmp_dir).__name__}")


def _owners(twin: VppEnv, device_class: int) -> list[int]:
    """Homes that own a device of the class (the twin's ownership: battery capacity > 0, charger rating > 0,
    PV kWp > 0, tank element > 0, heat pump > 0)."""
    return [int(h) for h in twin.fleet.devices[device_class].owned.nonzero()[0]]


async def start_simulated_fleet(twin: VppEnv, *, start_time: float, classes: Iterable[int] = DEFAULT_CLASSES,
                                tmp_dir: Path, ocpp_version: str = OCPP21, ven_poll_s: float = 0.25,
                                timeout_s: float = 10.0) -> SimulatedFleet:
    """Start a simulator per owned device of ``classes`` with the twin's parameters and current state, behind
    its real protocol on loopback with security on, and return the fleet with one link per device.

    ``start_time``: the simulated clock's start (unix s); with thermostats it must not be before the wall clock
    (OpenADR judges expiry on it). ``tmp_dir``: where the throwaway certificates go. ``ven_poll_s``: how often
    a VEN polls the VTN (a thermostat command's ack waits for the next poll). ``timeout_s`` bounds every network
    wait of the harness itself."""
    classes = tuple(int(c) for c in classes)
    _check_args(twin, start_time, classes, tmp_dir, ocpp_version, ven_poll_s, timeout_s)
    f = twin.fleet
    if BATTERY in classes and f.battery.params.curves is not None:
        warnings.warn("the twin's batteries carry CityLearn's curves; the SunSpec simulator runs the constant-"
                      "efficiency battery model, so simulated and twin batteries differ", stacklevel=2)
    fleet = SimulatedFleet(twin, start_time, timeout_s)
    try:
        await _start(fleet, classes, tmp_dir, ocpp_version, ven_poll_s)
    except BaseException:
        await fleet.close()
        raise
    return fleet


async def _start(fleet: SimulatedFleet, classes: tuple[int, ...], tmp_dir: Path, ocpp_version: str,
                 ven_poll_s: float) -> None:
    twin, f = fleet.twin, fleet.twin.fleet
    owners = {j: _owners(twin, j) for j in classes}
    k = fleet.first_step
    ch, grid = f.exogenous(k)
    # servers that listen: every Modbus and CTA-2045 device, the CSMS, the VTN
    modbus: dict[DeviceSlot, SunSpecInverterSim] = {}
    for h in owners.get(BATTERY, []):
        p = f.battery.params
        cap = float(p.capacity_kwh[h])
        spec = BatterySpec(capacity_kwh=cap, max_charge_kw=float(p.max_charge_kw[h]),
                           max_discharge_kw=float(p.max_discharge_kw[h]),
                           charge_efficiency=float(p.charge_efficiency[h]),
                           discharge_efficiency=float(p.discharge_efficiency[h]), soc_min=float(p.soc_min[h]),
                           soc_max=float(p.soc_max[h]), initial_soc=float(f.battery.energy_kwh[h]) / cap)
        modbus[DeviceSlot(h, BATTERY, device_id_for(h, BATTERY))] = SunSpecInverterSim(
            "battery", battery=spec, sf=ScaleFactors(wh=_wh_scale_factor(cap)), serial=f"home{h}-battery")
    for h in owners.get(PV, []):
        modbus[DeviceSlot(h, PV, device_id_for(h, PV))] = SunSpecInverterSim(
            "pv", pv_kwp=float(f.pv.kwp[h]), serial=f"home{h}-pv")
    tanks: dict[DeviceSlot, Cta2045WaterHeaterSim] = {}
    for h in owners.get(WATER_HEATER, []):
        p = f.water_heater.params
        spec = WaterHeaterSpec(volume_l=float(p.volume_l[h]), element_kw=float(p.element_kw[h]),
                               comfort_low_c=float(p.comfort_low_c[h]), comfort_high_c=float(p.comfort_high_c[h]),
                               setpoint_c=float(p.setpoint_c[h]), max_temp_c=float(p.max_temp_c[h]),
                               ua_kw_per_c=float(p.ua_kw_per_c[h]), inlet_c=float(p.inlet_c[h]),
                               ambient_c=float(p.ambient_c[h]), initial_temp_c=float(f.water_heater.temp_c[h]))
        tanks[DeviceSlot(h, WATER_HEATER, device_id_for(h, WATER_HEATER))] = Cta2045WaterHeaterSim(spec)
    fleet._servers = [*modbus.values(), *tanks.values()]
    starts: list[Any] = [s.start(HOST, 0) for s in fleet._servers]
    passwords: dict[str, str] = {}
    cp_ssl = None
    if owners.get(EV):
        ca = CertificateAuthority("vpprl simulated fleet CSMS CA")
        d = tmp_dir / "ocpp"
        ca_path, server = ca.write_ca(d), ca.write_leaf(d, "csms", "csms.local", server=True, hosts=(HOST,))
        passwords = {f"home{h}-ev": secrets.token_urlsafe(24) for h in owners[EV]}  # 32 characters each
        fleet.csms = Csms(CsmsSecurity(2, server_ssl_context(server.cert, server.key), PasswordStore(passwords)),
                          clock=fleet.clock, monotonic=fleet.clock)
        cp_ssl = client_ssl_context(ca_path)
        starts.append(fleet.csms.start(HOST, 0))
    pki = None
    if owners.get(THERMOSTAT):
        pki = TestPki(tmp_dir / "openadr", host=HOST)
        fleet.vtn = OpenAdrVtn(VtnConfig(vtn_id="vpprl-sim-vtn", cert_path=pki.vtn.cert_path,
                                         key_path=pki.vtn.key_path, ca_path=pki.ca_path, host=HOST,
                                         poll_interval_s=1, report_interval_s=3600))
        starts.append(fleet.vtn.start())
    addresses = await asyncio.wait_for(asyncio.gather(*starts), fleet.timeout_s)
    servers_up = dict(zip(fleet._servers, addresses))

    # links to the polled devices: SunSpec behind an allow list of exactly the simulators' addresses
    fleet.modbus_allow = AllowList([servers_up[s] for s in modbus.values()])
    for slot, sim in modbus.items():
        host, port = servers_up[sim]
        if slot.device_class == PV:
            sim.set_resource(max(float(ch[H["pv_kw_per_kwp"]][slot.home]), 0.0))
        fleet._add(slot, sim, SunSpecLink(slot.device_id, host, port, allow=fleet.modbus_allow,
                                          kind="pv" if slot.device_class == PV else "battery", clock=fleet.clock))
    for slot, sim in tanks.items():
        host, port = servers_up[sim]
        fleet._add(slot, sim, Cta2045Link(slot.device_id, host, port, clock=fleet.clock))

    # clients that connect to the VPP: charge points (OCPP) and VENs (OpenADR)
    connects: list[Any] = []
    for h in owners.get(EV, []):
        connects.append(_start_charger(fleet, h, ocpp_version, passwords[f"home{h}-ev"], cp_ssl))
    for h in owners.get(THERMOSTAT, []):
        assert pki is not None
        connects.append(_start_ven(fleet, h, pki, grid, ven_poll_s))
    await asyncio.gather(*connects)


async def _start_charger(fleet: SimulatedFleet, h: int, ocpp_version: str, password: str, ssl_context: Any) -> None:
    """One charge point: connect with its password, plug in the twin's session if one is running, report."""
    f, csms = fleet.twin.fleet, fleet.csms
    assert csms is not None
    p = f.ev.params
    charger_id = f"home{h}-ev"
    spec = ChargePointSpec(charger_id, ocpp_version, max_charge_kw=float(p.max_charge_kw[h]),
                           max_discharge_kw=float(p.max_discharge_kw[h]), efficiency=float(p.efficiency[h]),
                           v2g_min_soc=float(p.v2g_min_soc[h]))
    cp = SimulatedChargePoint(spec, start_time=fleet.now)
    slot = DeviceSlot(h, EV, device_id_for(h, EV))
    fleet._add(slot, cp, RenamedLink(csms.link(charger_id), slot.device_id))
    await cp.connect(csms.url(charger_id), ssl_context=ssl_context, password=password, timeout_s=fleet.timeout_s)
    ev = f.ev
    if bool(ev.connected[h]):
        cap = float(ev.capacity_kwh[h])
        htd = float(ev.hours_to_departure[h])
        fleet._devices[slot].ev_hours_to_departure = htd
        await cp.plug_in(cap, min(max(float(ev.energy_kwh[h]) / cap, 0.0), 1.0),
                         min(max(float(ev.target_kwh[h]) / cap, 0.0), 1.0), min(max(htd, 0.0), 168.0),
                         fleet.timeout_s)
    else:
        await cp.step(0.0, fleet.timeout_s)  # a first meter value: the CSMS knows the charger is idle


async def _start_ven(fleet: SimulatedFleet, h: int, pki: TestPki, grid: Any, poll_s: float) -> None:
    """One thermostat VEN: its certificate, its enrollment by fingerprint, registration, a first report."""
    vtn = fleet.vtn
    assert vtn is not None
    f = fleet.twin.fleet
    p = f.thermostat.params
    name = f"home{h}"
    ven_id = f"ven-{name}"
    cert = pki.issue(f"{name}-thermostat")
    vtn.enroll_ven(ven_id, name, cert.fingerprint())
    slot = DeviceSlot(h, THERMOSTAT, device_id_for(h, THERMOSTAT))
    link = vtn.add_resource(ven_id, slot.device_id, "thermostat")
    params = HomeParams(
        resistance_c_per_kw=float(p.resistance_c_per_kw[h]), capacitance_kwh_per_c=float(p.capacitance_kwh_per_c[h]),
        heat_pump_kw=float(p.heat_pump_kw[h]), comfort_low_c=float(p.comfort_low_c[h]),
        comfort_high_c=float(p.comfort_high_c[h]), occupant_setpoint_c=float(f.thermostat.setpoint_c[h]),
        initial_temp_c=float(f.thermostat.temp_c[h]), solar_aperture_m2=float(p.solar_aperture_m2[h]),
        internal_gain_kw=float(p.internal_gain_kw[h]), balance_temp_c=float(p.balance_temp_c[h]))
    creds = VenCredentials(ven_id, name, cert.cert_path, cert.key_path, pki.ca_path, pki.vtn.fingerprint())
    ven = ThermostatVen(slot.device_id, vtn.url, creds, params, t0=fleet.now, poll_interval_s=poll_s)
    ven.outdoor_c = float(grid[G["outdoor_temp_c"]])
    ven.ghi_w_m2 = float(grid[G["ghi_w_m2"]])
    fleet._add(slot, ven, link)
    await ven.start(fleet.timeout_s)
    await ven.report_now(fleet.timeout_s)
    await link.read(fleet.timeout_s)
