"""A simulated EV charge point that speaks real OCPP 2.0.1 / 2.1 (``ocpp`` client) to the VPP's CSMS.

The EV behind it follows the env's charger physics (``envs/devices/ev_charger.py``): a session starts with
``EvCharger.update_sessions`` (energy, target, V2G floor), each interval runs ``EvCharger.prepare`` (power
limits from the charger rating, the battery headroom and the V2G floor; ``p_default`` = the EV's own
charging: full power until the target) and ``StorageDevice.step`` (one efficiency each way). Time is
simulated: ``step(dt_s)`` advances the clock and the physics, then reports telemetry stamped with the
charger's own clock, so nothing depends on the wall clock.

Control: a ``SetChargingProfile`` caps (``limit``) or sets (2.1 ``CentralSetpoint``) the power until
``validTo``; on 2.1 also only until ``maxOfflineDuration`` after the CSMS went silent. After either the
charger reverts to its own charging. Profiles are stored and checked as OCPP 2.0.1 / 2.1 K01 requires of a
charging station, as a real one does:

* K01.FR.05: a profile whose id is already installed replaces that profile (whatever command it carries:
  the charger does not de-duplicate by command; that is the CSMS's job);
* K01.FR.06 (purpose not TxProfile): a profile with another id but the same stackLevel, purpose and EVSE
  as an installed one and an overlapping validity period (validFrom..validTo, absent = unbounded; ends
  count as overlapping, as EVerest libocpp does) is Rejected, reasonCode ``DuplicateProfile``;
* K01.FR.39 (TxProfile): a profile with another id but the same stackLevel and transactionId as an
  installed TxProfile is Rejected, reasonCode ``InvalidStackLevel`` (libocpp's code for it).

The profile in force is the highest-stackLevel valid TxProfile of the running transaction, else the
highest-stackLevel valid TxDefaultProfile. Telemetry uses standard measurands: ``Power.Active.Import`` /
``Export`` per phase (L1..L3, no overall value), the energy registers and the EV's ``SoC`` (percent); the
battery capacity goes out as 2.1 ``Display.BatteryEnergyCapacity`` and, on 2.0.1 (no such measurand), in
the VPP vendor field ``customData.batteryCapacityWh`` on the SoC sample. Simulator limits: one EVSE, one
schedule with one period, rates in W.
"""

from __future__ import annotations

import asyncio
import base64
import math
import ssl
from dataclasses import dataclass
from typing import Any

import numpy as np
from ocpp.routing import on
from ocpp.v21 import ChargePoint as _ChargePoint21
from ocpp.v201 import ChargePoint as _ChargePoint201
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from ...envs.devices.ev_charger import EvCharger, EvChargerParams
from ..commands import check_range
from ..protocols.ocpp_csms import (
    CAPACITY_MEASURAND,
    EVSE_ID,
    OCPP21,
    VENDOR_ID,
    VERSIONS,
    command_id_of,
    iso_utc,
    parse_iso,
    redacting_logger,
)


@dataclass(frozen=True)
class ChargePointSpec:
    """The charger's hardware and protocol (mirrors one home of ``EvChargerParams``)."""

    charger_id: str
    ocpp_version: str = OCPP21
    max_charge_kw: float = 11.0
    max_discharge_kw: float = 0.0  # V2G export limit; 0 = V1G only
    efficiency: float = 0.9
    v2g_min_soc: float = 0.2
    phases: int = 3  # AC phases the meter reports power on (one sample per phase)

    def __post_init__(self) -> None:
        if self.ocpp_version not in VERSIONS:
            raise ValueError(f"ocpp_version = {self.ocpp_version!r} is not one of {VERSIONS}")
        if self.phases not in (1, 3):
            raise ValueError(f"phases = {self.phases!r} is not one of (1, 3)")
        for name, lo, hi in (("max_charge_kw", 0.0, 1000.0), ("max_discharge_kw", 0.0, 1000.0),
                             ("efficiency", 0.01, 1.0), ("v2g_min_soc", 0.0, 1.0)):
            value = getattr(self, name)
            if not (math.isfinite(value) and lo <= value <= hi):
                raise ValueError(f"{name} = {value} is outside the allowed range [{lo}, {hi}]")

    def params(self) -> EvChargerParams:
        return EvChargerParams(max_charge_kw=np.array([self.max_charge_kw]),
                               max_discharge_kw=np.array([self.max_discharge_kw]),
                               efficiency=np.array([self.efficiency]), v2g_min_soc=np.array([self.v2g_min_soc]))


@dataclass(frozen=True)
class ActiveProfile:
    """One installed charging profile (parsed from a SetChargingProfileRequest)."""

    profile_id: int
    evse_id: int
    stack_level: int
    purpose: str
    transaction_id: str | None
    start: float  # unix s: startSchedule
    valid_from: float  # unix s (-inf: absent)
    valid_to: float  # unix s (inf: absent, until replaced)
    max_offline_s: float | None
    invalid_after_offline: bool
    limit_kw: float | None
    setpoint_kw: float | None  # 2.1 CentralSetpoint
    discharge_limit_kw: float | None
    command_id: str | None


class _Refused(Exception):
    def __init__(self, reason_code: str, info: str) -> None:
        super().__init__(info)
        self.reason_code, self.info = reason_code, info


def _parse_profile(evse_id: int, p: dict[str, Any], transaction_id: str | None,
                   spec: ChargePointSpec) -> ActiveProfile:
    """Check a (snake_case) charging profile against what this charger supports."""
    purpose = p["charging_profile_purpose"]
    if purpose == "TxProfile":
        if p.get("transaction_id") is None or p.get("transaction_id") != transaction_id:
            raise _Refused("TxNotFound", f"no running transaction {p.get('transaction_id')!r}")
    elif purpose != "TxDefaultProfile":
        raise _Refused("UnsupportedPurpose", f"purpose {purpose} is not supported")
    if evse_id not in (0, EVSE_ID):
        raise _Refused("UnknownEvse", f"evseId {evse_id} does not exist")
    schedules = p["charging_schedule"]
    if len(schedules) != 1 or len(schedules[0]["charging_schedule_period"]) != 1:
        raise _Refused("UnsupportedParam", "one schedule with one period is supported")
    schedule = schedules[0]
    period = schedule["charging_schedule_period"][0]
    if schedule["charging_rate_unit"] != "W" or period["start_period"] != 0:
        raise _Refused("UnsupportedParam", "rates in W from startPeriod 0 are supported")
    mode = period.get("operation_mode", "ChargingOnly")
    kw = {k: (period[k] / 1000.0 if period.get(k) is not None else None)
          for k in ("limit", "setpoint", "discharge_limit")}
    if mode == "CentralSetpoint":
        if kw["setpoint"] is None:
            raise _Refused("MissingParam", "CentralSetpoint needs a setpoint")
        if kw["setpoint"] < 0 and spec.max_discharge_kw <= 0:
            raise _Refused("NoV2X", "this charger cannot discharge")
    elif mode == "ChargingOnly":
        if kw["limit"] is None or kw["limit"] < 0:
            raise _Refused("InvalidValue", "ChargingOnly needs a limit >= 0")
        kw["setpoint"] = None
    else:
        raise _Refused("UnsupportedMode", f"operationMode {mode} is not supported")
    start = parse_iso(schedule["start_schedule"]) if schedule.get("start_schedule") else -math.inf
    valid_to = parse_iso(p["valid_to"]) if p.get("valid_to") else math.inf
    valid_from = parse_iso(p["valid_from"]) if p.get("valid_from") else -math.inf
    if not valid_from < valid_to:
        raise _Refused("InvalidValue", "validFrom is not before validTo")
    return ActiveProfile(
        profile_id=int(p["id"]), evse_id=evse_id, stack_level=int(p["stack_level"]), purpose=purpose,
        transaction_id=p.get("transaction_id"), start=start, valid_from=valid_from, valid_to=valid_to,
        max_offline_s=p.get("max_offline_duration"),
        invalid_after_offline=bool(p.get("invalid_after_offline_duration", False)), limit_kw=kw["limit"],
        setpoint_kw=kw["setpoint"], discharge_limit_kw=kw["discharge_limit"], command_id=command_id_of(p))


def _conflict(new: ActiveProfile, installed: ActiveProfile) -> tuple[str, str] | None:
    """(reasonCode, additionalInfo) when ``new`` may not be installed next to ``installed`` (K01)."""
    if new.profile_id == installed.profile_id or new.stack_level != installed.stack_level:
        return None  # same id: a replacement (K01.FR.05)
    if new.purpose == "TxProfile":
        if installed.purpose == "TxProfile" and installed.transaction_id == new.transaction_id:
            info = (f"K01.FR.39: TxProfile {installed.profile_id} already has stackLevel {new.stack_level} "
                    f"for transaction {new.transaction_id}")
            return "InvalidStackLevel", info
        return None
    if (installed.purpose == new.purpose and installed.evse_id == new.evse_id
            and new.valid_from <= installed.valid_to and new.valid_to >= installed.valid_from):
        info = (f"K01.FR.06: DuplicateProfileValidityPeriod with {new.purpose} {installed.profile_id} "
                f"(stackLevel {new.stack_level}, evseId {new.evse_id})")
        return "DuplicateProfile", info
    return None


class _SimHandlers:
    """The charge point's answers to the CSMS (shared by the 2.0.1 and 2.1 classes)."""

    owner: SimulatedChargePoint
    _call_result: Any

    @on("SetChargingProfile")
    def on_set_charging_profile(self, evse_id: int, charging_profile: dict, **_: Any) -> Any:
        accepted, reason, info = self.owner._receive_profile(evse_id, charging_profile)
        status_info = {"reason_code": reason, "additional_info": info} if reason else None
        return self._call_result.SetChargingProfile(status="Accepted" if accepted else "Rejected",
                                                    status_info=status_info)


class _Sim201(_SimHandlers, _ChargePoint201):
    def __init__(self, owner: SimulatedChargePoint, connection: ClientConnection) -> None:
        super().__init__(owner.spec.charger_id, connection, response_timeout=30)
        self.owner = owner


class _Sim21(_SimHandlers, _ChargePoint21):
    def __init__(self, owner: SimulatedChargePoint, connection: ClientConnection) -> None:
        super().__init__(owner.spec.charger_id, connection, response_timeout=30)
        self.owner = owner


class SimulatedChargePoint:
    """One charge point + EV on simulated time; connect it to a CSMS, plug an EV in, ``step`` it."""

    def __init__(self, spec: ChargePointSpec, *, start_time: float) -> None:
        check_range("start_time", start_time, 0.0, 1e11)
        self.spec = spec
        self._params = spec.params()
        self.clock = float(start_time)  # the charger's own clock (unix s); only step() moves it
        # EV session state (one home of EvCharger's arrays)
        self.plugged = False
        self.energy_kwh = self.capacity_kwh = self.target_kwh = self.v2g_floor_kwh = 0.0
        self.power_kw = 0.0  # power at the end of the last step (what the meter reads now)
        self.import_wh = self.export_wh = 0.0  # energy registers at the grid connection
        # control
        self.profiles: dict[int, ActiveProfile] = {}  # installed, by profile id
        self.applied_profile_ids: list[int] = []  # one entry per accepted SetChargingProfile
        self.applied_command_ids: list[str | None] = []  # the VPP command id each one carried
        self.profiles_received = 0
        self.transaction_id: str | None = None
        self._tx_count = 0
        self._seq_no = 0
        # connection
        self._ws: ClientConnection | None = None
        self._cp: _Sim201 | _Sim21 | None = None
        self._reader: asyncio.Task[None] | None = None
        self.online = False
        self.offline_since: float | None = None

    # ------------------------------------------------------------------------------------ connection
    async def connect(self, url: str, *, ssl_context: ssl.SSLContext | None, password: str | None = None,
                      timeout_s: float = 5.0) -> None:
        """Open the websocket (``ocpp2.1`` or ``ocpp2.0.1``) and boot. A refused handshake raises
        ``ConnectionRefusedError`` naming the HTTP status; a failed TLS handshake ``ConnectionError``."""
        headers = {}
        if password is not None:  # security profile 2: HTTP Basic, username = the charge point identity
            token = base64.b64encode(f"{self.spec.charger_id}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        try:
            ws = await asyncio.wait_for(
                connect(url, subprotocols=[f"ocpp{self.spec.ocpp_version}"], ssl=ssl_context,  # type: ignore[list-item]
                        additional_headers=headers, proxy=None, open_timeout=timeout_s,
                        logger=redacting_logger("vpprl.ocpp.charge_point")), timeout_s)
        except InvalidStatus as e:
            raise ConnectionRefusedError(
                f"CSMS refused charge point {self.spec.charger_id}: HTTP {e.response.status_code}") from e
        except (OSError, WebSocketException, EOFError) as e:
            raise ConnectionError(f"charge point {self.spec.charger_id} could not connect: {e!r}") from e
        self._ws = ws
        self._cp = (_Sim21 if self.spec.ocpp_version == OCPP21 else _Sim201)(self, ws)
        self._reader = asyncio.create_task(self._serve())
        self.online, self.offline_since = True, None
        try:
            boot = await asyncio.wait_for(self._cp.call(self._cp._call.BootNotification(
                charging_station={"model": "vpprl-sim", "vendor_name": "vpprl"}, reason="PowerUp")), timeout_s)
        except BaseException:
            await self.close()
            raise
        if boot is None or boot.status != "Accepted":
            await self.close()
            raise ConnectionRefusedError(f"CSMS did not accept the boot of {self.spec.charger_id}")

    async def _serve(self) -> None:
        assert self._cp is not None
        try:
            await self._cp.start()
        except ConnectionClosed:
            pass
        finally:  # the CSMS went silent: start counting maxOfflineDuration on the charger's clock
            self.online = False
            self.offline_since = self.clock

    async def wait_offline(self, timeout_s: float) -> None:
        """Wait until the charger has noticed that its CSMS connection is gone."""
        if self._reader is not None:
            await asyncio.wait_for(asyncio.shield(self._reader), timeout_s)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 5.0)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._reader.cancel()
        self.online = False

    # ----------------------------------------------------------------------------------------- profiles
    def _receive_profile(self, evse_id: int, charging_profile: dict[str, Any]) -> tuple[bool, str, str]:
        """(accepted, reasonCode, additionalInfo) for one SetChargingProfile (K01.FR.05 / .06 / .39)."""
        self.profiles_received += 1
        try:
            profile = _parse_profile(evse_id, charging_profile, self.transaction_id, self.spec)
        except _Refused as e:
            return False, e.reason_code, e.info
        if profile.valid_to <= self.clock:
            return False, "InvalidValidTo", "validTo is in the past on the charger's clock"
        self._drop_expired_profiles()  # an expired profile no longer conflicts with anything
        for installed in self.profiles.values():
            if (conflict := _conflict(profile, installed)) is not None:
                return False, *conflict
        self.profiles[profile.profile_id] = profile  # new, or a replacement of the same id (K01.FR.05)
        self.applied_profile_ids.append(profile.profile_id)
        self.applied_command_ids.append(profile.command_id)
        return True, "", ""

    def _profile_end(self, p: ActiveProfile) -> float:
        """When a profile stops applying: validTo, or maxOfflineDuration after going offline."""
        end = p.valid_to
        if p.max_offline_s is not None and self.offline_since is not None and not self.online:
            end = min(end, self.offline_since + p.max_offline_s)
        return end

    def _drop_expired_profiles(self) -> None:
        # past validTo, or offline longer than maxOfflineDuration: this simulator does not reconnect, so
        # "invalid while offline" and invalidAfterOfflineDuration (what the CSMS sends) coincide here
        for pid in [pid for pid, p in self.profiles.items() if self.clock >= self._profile_end(p)]:
            del self.profiles[pid]

    @property
    def profile(self) -> ActiveProfile | None:
        """The profile in force now: the running transaction's TxProfile, else a TxDefaultProfile (highest
        stackLevel; an EVSE-specific one before one on EVSE 0), within its validity and schedule."""
        now = self.clock
        live = [p for p in self.profiles.values()
                if p.valid_from <= now < self._profile_end(p) and p.start <= now]
        tx = [p for p in live if p.purpose == "TxProfile" and self.transaction_id is not None
              and p.transaction_id == self.transaction_id]
        pool = tx or [p for p in live if p.purpose == "TxDefaultProfile"]
        return max(pool, key=lambda p: (p.stack_level, p.evse_id)) if pool else None

    def _requested_kw(self, p_default: float) -> float:
        """What the charger asks of the EV now: its own charging, or the profile's limit / setpoint."""
        p = self.profile
        if p is None:
            return p_default
        if p.setpoint_kw is None:  # a limit caps the EV's own charging
            assert p.limit_kw is not None
            return min(p_default, p.limit_kw)
        request = p.setpoint_kw
        if p.limit_kw is not None:
            request = min(request, p.limit_kw)
        if p.discharge_limit_kw is not None:
            request = max(request, p.discharge_limit_kw)
        return request

    # ---------------------------------------------------------------------------------------- physics
    def _new_ev(self, dt_h: float) -> EvCharger:
        ev = EvCharger(self._params, dt_h)
        ev.connected = np.array([self.plugged])
        ev.available = np.array([1.0 if self.plugged else 0.0])
        ev.energy_kwh = np.array([self.energy_kwh])
        ev.target_kwh = np.array([self.target_kwh])
        ev.capacity_kwh = np.array([self.capacity_kwh])
        ev.v2g_floor_kwh = np.array([self.v2g_floor_kwh])
        return ev

    def _segment(self, dt_s: float) -> float:
        """One interval of constant control: EvCharger.prepare() limits, then StorageDevice.step()."""
        ev = self._new_ev(dt_s / 3600.0)
        ev.prepare()
        p_kw = float(ev.step(np.array([self._requested_kw(float(ev.p_default[0]))]))[0])
        self.energy_kwh = float(ev.energy_kwh[0])
        self.import_wh += max(p_kw, 0.0) * dt_s / 3.6
        self.export_wh += max(-p_kw, 0.0) * dt_s / 3.6
        return p_kw

    def advance(self, dt_s: float) -> float:
        """Advance physics and clock by ``dt_s`` (split where a profile starts or ends); the end power."""
        check_range("dt_s", dt_s, 0.0, 7 * 86_400.0)
        t_end = self.clock + dt_s
        while self.clock < t_end:
            self._drop_expired_profiles()
            bounds = [t_end]
            for p in self.profiles.values():  # where the profile in force may change
                bounds += [b for b in (p.valid_from, p.start, self._profile_end(p)) if b > self.clock]
            seg_end = min(bounds)
            self.power_kw = self._segment(seg_end - self.clock)
            self.clock = seg_end
        self._drop_expired_profiles()
        return self.power_kw

    async def step(self, dt_s: float, timeout_s: float = 5.0) -> float:
        """Advance ``dt_s`` seconds, then report meter values to the CSMS (if online); the power now."""
        power = self.advance(dt_s)
        if self.plugged:
            await self._transaction_event("Updated", "MeterValuePeriodic", timeout_s)
        else:
            await self._send(lambda c: c.MeterValues(evse_id=EVSE_ID, meter_value=[self._meter_value()]),
                             timeout_s)
        return power

    # ------------------------------------------------------------------------------------- sessions
    async def plug_in(self, capacity_kwh: float, soc: float, target_soc: float, hours_to_departure: float = 8.0,
                      timeout_s: float = 5.0) -> None:
        """An EV arrives: the env's session start (EvCharger.update_sessions) and a TransactionEvent Started."""
        check_range("capacity_kwh", capacity_kwh, 1.0, 300.0)
        check_range("soc", soc, 0.0, 1.0)
        check_range("target_soc", target_soc, 0.0, 1.0)
        check_range("hours_to_departure", hours_to_departure, 0.0, 168.0)
        if self.plugged:
            raise RuntimeError(f"an EV is already plugged into {self.spec.charger_id}")
        ev = EvCharger(self._params, 1.0)
        ev.update_sessions(np.array([1.0]), np.array([hours_to_departure]), np.array([capacity_kwh]),
                           np.array([soc]), np.array([target_soc]))
        self.plugged = True
        self.energy_kwh, self.target_kwh = float(ev.energy_kwh[0]), float(ev.target_kwh[0])
        self.capacity_kwh, self.v2g_floor_kwh = float(ev.capacity_kwh[0]), float(ev.v2g_floor_kwh[0])
        self._tx_count += 1
        self.transaction_id = f"{self.spec.charger_id}-{self._tx_count}"[-36:]
        await self._transaction_event("Started", "CablePluggedIn", timeout_s)

    async def unplug(self, timeout_s: float = 5.0) -> None:
        """The EV leaves: the transaction ends and its TxProfile with it."""
        if not self.plugged:
            return
        self.plugged, self.power_kw = False, 0.0
        self.energy_kwh = self.target_kwh = self.capacity_kwh = self.v2g_floor_kwh = 0.0
        await self._transaction_event("Ended", "EVDeparted", timeout_s)
        self.transaction_id = None
        for pid in [pid for pid, p in self.profiles.items() if p.purpose == "TxProfile"]:
            del self.profiles[pid]  # a TxProfile ends with its transaction

    # ------------------------------------------------------------------------------------ telemetry
    def _meter_value(self) -> dict[str, Any]:
        """One meterValue (wire camelCase) stamped with the charger's clock: standard measurands only, but
        for the battery capacity on 2.0.1 (vendor customData, see the module docstring)."""
        def sample(value: float, measurand: str, unit: str, **extra: Any) -> dict[str, Any]:
            return {"value": value, "measurand": measurand, "context": "Sample.Periodic",
                    "unitOfMeasure": {"unit": unit}, **extra}
        phases = ("L1", "L2", "L3")[:self.spec.phases]
        share = 1000.0 / len(phases)  # kW -> W on each phase
        samples = [*(sample(max(self.power_kw, 0.0) * share, "Power.Active.Import", "W", phase=ph) for ph in phases),
                   *(sample(max(-self.power_kw, 0.0) * share, "Power.Active.Export", "W", phase=ph) for ph in phases),
                   sample(self.import_wh, "Energy.Active.Import.Register", "Wh"),
                   sample(self.export_wh, "Energy.Active.Export.Register", "Wh")]
        if self.plugged:
            soc = sample(100.0 * self.energy_kwh / self.capacity_kwh, "SoC", "Percent", location="EV")
            samples.append(soc)
            if self.spec.ocpp_version == OCPP21:
                samples.append(sample(self.capacity_kwh * 1000.0, CAPACITY_MEASURAND, "Wh", location="EV"))
            else:
                soc["customData"] = {"vendorId": VENDOR_ID, "batteryCapacityWh": self.capacity_kwh * 1000.0}
        return {"timestamp": iso_utc(self.clock), "sampledValue": samples}

    def _charging_state(self) -> str:
        if not self.plugged:
            return "Idle"
        if abs(self.power_kw) > 1e-9:
            return "Charging"
        return "SuspendedEV" if self.energy_kwh >= self.target_kwh else "SuspendedEVSE"

    async def _transaction_event(self, event_type: str, trigger: str, timeout_s: float) -> None:
        assert self.transaction_id is not None
        info: dict[str, Any] = {"transactionId": self.transaction_id, "chargingState": self._charging_state()}
        if event_type == "Ended":
            info["stoppedReason"] = "EVDisconnected"
        self._seq_no += 1
        seq, stamp, meter = self._seq_no, iso_utc(self.clock), [self._meter_value()]
        await self._send(lambda c: c.TransactionEvent(
            event_type=event_type, timestamp=stamp, trigger_reason=trigger, seq_no=seq, transaction_info=info,
            meter_value=meter, evse={"id": EVSE_ID, "connectorId": 1}), timeout_s)

    async def _send(self, build: Any, timeout_s: float) -> None:
        """Send one request built from the version's ``call`` module; skipped while offline."""
        if not self.online or self._cp is None:
            return
        try:
            await asyncio.wait_for(self._cp.call(build(self._cp._call), suppress=False), timeout_s)
        except ConnectionClosed:
            pass  # _serve notices and starts the offline clock
        except asyncio.TimeoutError:
            if self.online:  # an open connection that does not answer is a fault worth raising
                raise
