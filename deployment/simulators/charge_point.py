"""A simulated EV charge point that speaks real OCPP 2.0.1 / 2.1 (``ocpp`` client) to the VPP's CSMS.

The EV behind it follows the env's charger physics (``envs/devices/ev_charger.py``): a session starts with
``EvCharger.update_sessions`` (energy, target, V2G floor), each interval runs ``EvCharger.prepare`` (power
limits from the charger rating, the battery headroom and the V2G floor; ``p_default`` = the EV's own
charging: full power until the target) and ``StorageDevice.step`` (one efficiency each way). Time is
simulated: ``step(dt_s)`` advances the clock and the physics, then reports telemetry stamped with the
charger's own clock, so nothing depends on the wall clock.

Control: a ``SetChargingProfile`` caps (``limit``) or sets (2.1 ``CentralSetpoint``) the power until
``validTo``; on 2.1 also only until ``maxOfflineDuration`` after the CSMS went silent. After either the
charger reverts to its own charging. A profile id seen before is acknowledged and not applied again, so a
late resend of an old command never overrides a newer one. Simulator limits: one EVSE, one schedule with
one period, rates in W.
"""

from __future__ import annotations

import asyncio
import base64
import math
import ssl
from collections import deque
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
from ..protocols.ocpp_csms import EVSE_ID, OCPP21, VENDOR_ID, VERSIONS, iso_utc, parse_iso, redacting_logger

_SEEN_MAX = 4096  # profile ids remembered for duplicate detection


@dataclass(frozen=True)
class ChargePointSpec:
    """The charger's hardware and protocol (mirrors one home of ``EvChargerParams``)."""

    charger_id: str
    ocpp_version: str = OCPP21
    max_charge_kw: float = 11.0
    max_discharge_kw: float = 0.0  # V2G export limit; 0 = V1G only
    efficiency: float = 0.9
    v2g_min_soc: float = 0.2

    def __post_init__(self) -> None:
        if self.ocpp_version not in VERSIONS:
            raise ValueError(f"ocpp_version = {self.ocpp_version!r} is not one of {VERSIONS}")
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
    """The one charging profile in force (parsed from a SetChargingProfileRequest)."""

    profile_id: int
    purpose: str
    transaction_id: str | None
    start: float  # unix s
    valid_to: float  # unix s (inf: until replaced)
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
    extra = p.get("custom_data") or {}
    return ActiveProfile(
        profile_id=int(p["id"]), purpose=purpose, transaction_id=p.get("transaction_id"), start=start,
        valid_to=valid_to, max_offline_s=p.get("max_offline_duration"),
        invalid_after_offline=bool(p.get("invalid_after_offline_duration", False)), limit_kw=kw["limit"],
        setpoint_kw=kw["setpoint"], discharge_limit_kw=kw["discharge_limit"], command_id=extra.get("command_id"))


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
        self.profile: ActiveProfile | None = None
        self.applied_profile_ids: list[int] = []
        self.profiles_received = 0
        self._seen: deque[int] = deque(maxlen=_SEEN_MAX)
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
        """(accepted, reasonCode, additionalInfo) for one SetChargingProfile; applies it at most once."""
        self.profiles_received += 1
        pid = int(charging_profile["id"])
        if pid in self._seen:
            return True, "Duplicate", f"profile {pid} already applied"
        try:
            profile = _parse_profile(evse_id, charging_profile, self.transaction_id, self.spec)
        except _Refused as e:
            return False, e.reason_code, e.info
        if profile.valid_to <= self.clock:
            return False, "InvalidValidTo", "validTo is in the past on the charger's clock"
        self._seen.append(pid)
        self.applied_profile_ids.append(pid)
        self.profile = profile
        return True, "", ""

    def _profile_end(self) -> float:
        """When the profile in force stops applying: validTo, or maxOfflineDuration after going offline."""
        p = self.profile
        if p is None:
            return -math.inf
        end = p.valid_to
        if p.max_offline_s is not None and self.offline_since is not None and not self.online:
            end = min(end, self.offline_since + p.max_offline_s)
        return end

    def _drop_expired_profile(self) -> None:
        # past validTo, or offline longer than maxOfflineDuration: this simulator does not reconnect, so
        # "invalid while offline" and invalidAfterOfflineDuration (what the CSMS sends) coincide here
        if self.profile is not None and self.clock >= self._profile_end():
            self.profile = None

    def _requested_kw(self, p_default: float) -> float:
        """What the charger asks of the EV now: its own charging, or the profile's limit / setpoint."""
        p = self.profile
        if p is None or self.clock < p.start:
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
            self._drop_expired_profile()
            bounds = [t_end]
            if self.profile is not None:
                bounds += [b for b in (self.profile.start, self._profile_end()) if b > self.clock]
            seg_end = min(bounds)
            self.power_kw = self._segment(seg_end - self.clock)
            self.clock = seg_end
        self._drop_expired_profile()
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
        if self.profile is not None and self.profile.purpose == "TxProfile":
            self.profile = None

    # ------------------------------------------------------------------------------------ telemetry
    def _meter_value(self) -> dict[str, Any]:
        """One meterValue (wire camelCase) stamped with the charger's clock."""
        def sample(value: float, measurand: str, unit: str) -> dict[str, Any]:
            return {"value": value, "measurand": measurand, "context": "Sample.Periodic",
                    "unitOfMeasure": {"unit": unit}}
        samples = [sample(max(self.power_kw, 0.0) * 1000.0, "Power.Active.Import", "W"),
                   sample(max(-self.power_kw, 0.0) * 1000.0, "Power.Active.Export", "W"),
                   sample(self.import_wh, "Energy.Active.Import.Register", "Wh"),
                   sample(self.export_wh, "Energy.Active.Export.Register", "Wh")]
        if self.plugged:
            soc = sample(100.0 * self.energy_kwh / self.capacity_kwh, "SoC", "Percent")
            soc["customData"] = {"vendorId": VENDOR_ID, "batteryEnergyWh": self.energy_kwh * 1000.0,
                                 "batteryCapacityWh": self.capacity_kwh * 1000.0}
            samples.append(soc)
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
