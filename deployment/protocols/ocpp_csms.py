"""EV chargers over OCPP: the VPP is the CSMS, charge points connect to it over a secured websocket.

Four jobs, each small:

* the encoder turns a loop ``PowerCommand`` into a ``SetChargingProfile`` request: a 2.0.1 charging limit
  in W for a setpoint >= 0, an OCPP 2.1 ``CentralSetpoint`` period for a negative (V2X) one; ``validTo`` is
  the envelope's expiry and, on 2.1, ``maxOfflineDuration`` makes the charger drop the profile when the VPP
  goes silent. Every command to one (charger, EVSE, purpose) goes out under ONE stable profile id
  (``profile_id_for``) at stackLevel 0, so each new command replaces the previous profile (OCPP 2.0.1 /
  2.1 K01.FR.05: a known ``chargingProfile.id`` is replaced). A new id per command would break K01.FR.06
  (no other id with the same stackLevel, purpose and EVSE and an overlapping validity period) and, for a
  ``TxProfile``, K01.FR.39 (no other id with the same stackLevel and transaction): a conformant charger
  rejects such a profile (EVerest libocpp: ``DuplicateProfileValidityPeriod``). The command id travels in
  the profile's ``customData`` (vendorId ``VENDOR_ID``, ``commandId``);
* because a conformant charger replaces whatever arrives under the stable id, idempotency and ordering
  are the CSMS's job (``CommandLedger``): a command id the charger already accepted is acknowledged and
  not sent again, and a command issued before the newest accepted one is refused unsent, so a late
  resend never overrides a newer command;
* the server accepts charge points with OCPP security profile 2 (TLS + HTTP Basic auth, username = the
  charge point's identity) or 3 (mutual TLS, client certificate signed by the VPP's CA, CN = identity),
  speaks the ``ocpp2.1`` / ``ocpp2.0.1`` subprotocols and keeps each charger's latest telemetry, read from
  standard measurands (see ``telemetry_from_meter_values``);
* ``link(charger_id)`` hands the dispatch loop a ``DeviceLink``: ``send`` validates, de-duplicates,
  rate-limits and sends a command and returns the charger's answer as a ``CommandAck``; ``read`` returns
  the latest telemetry.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import math
import os
import re
import ssl
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ocpp.exceptions import OCPPError
from ocpp.messages import Call, validate_payload
from ocpp.routing import after, on
from ocpp.v21 import ChargePoint as _ChargePoint21
from ocpp.v201 import ChargePoint as _ChargePoint201
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ..commands import Command, CommandAck, CommandError, DeviceLink, PowerCommand, Telemetry

OCPP201 = "2.0.1"
OCPP21 = "2.1"
VERSIONS = (OCPP201, OCPP21)
SUBPROTOCOLS: dict[str, str] = {"ocpp2.1": OCPP21, "ocpp2.0.1": OCPP201}  # server preference: 2.1 first
VENDOR_ID = "org.vpprl"  # customData vendor id: the command id on profiles, battery energy on meter values
EVSE_ID = 1  # the simulated and encoded chargers have one EVSE with one connector
HEARTBEAT_S = 300
_ID_RE = re.compile(r"[A-Za-z0-9._\-]{1,48}")  # OCPP identity: max 48 chars, no ':' (it is the basic-auth user)


class OcppVersionError(CommandError):
    """A command the charger's negotiated OCPP version cannot express (e.g. V2X on 2.0.1)."""


def iso_utc(t: float) -> str:
    """Unix seconds as the RFC 3339 UTC timestamp OCPP uses (millisecond precision)."""
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(stamp: str) -> float:
    """An OCPP date-time back to unix seconds (a stamp without offset is UTC, as OCPP requires)."""
    parsed = datetime.fromisoformat(stamp)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


# ---------------------------------------------------------------------------------------------- encoder


def profile_id_for(charger_id: str, purpose: str, evse_id: int = EVSE_ID) -> int:
    """The VPP's one charging-profile id for (charger, EVSE, purpose): a positive int32, stable across
    commands, reconnects and CSMS restarts.

    One id per (EVSE, purpose) at stackLevel 0 is what lets every new command replace the previous
    profile (K01.FR.05) instead of clashing with it (K01.FR.06 / K01.FR.39). Profile ids only need to be
    unique within one charging station; hashing in the charger identity and the VPP's vendor id keeps
    ours away from small ids other parties (installer, local EMS) tend to use."""
    key = f"{VENDOR_ID}/{charger_id}/{evse_id}/{purpose}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "big") & 0x7FFF_FFFF or 1


def command_id_of(charging_profile: Mapping[str, Any]) -> str | None:
    """The VPP command id carried in a charging profile's customData (wire camelCase or snake_case)."""
    extra = charging_profile.get("customData") or charging_profile.get("custom_data") or {}
    if extra.get("vendorId", extra.get("vendor_id")) != VENDOR_ID:
        return None
    cid = extra.get("commandId", extra.get("command_id"))
    return cid if isinstance(cid, str) else None


def validate_for_charger(command: Command, ocpp_version: str, now: float) -> PowerCommand:
    """Refuse what must not be sent to this charger, naming the field and the allowed range."""
    if not isinstance(command, PowerCommand):
        raise CommandError(f"command: an OCPP charger takes a PowerCommand, got {type(command).__name__}")
    if ocpp_version not in VERSIONS:
        raise CommandError(f"ocpp_version = {ocpp_version!r} is not one of {VERSIONS}")
    command.validate()
    valid_until = command.envelope.valid_until
    if not valid_until > now:
        raise CommandError(f"valid_until = {valid_until} has expired: allowed range is after now ({now})")
    if command.setpoint_kw < 0 and ocpp_version == OCPP201:
        raise OcppVersionError(
            f"setpoint_kw = {command.setpoint_kw} is outside the allowed range [0, {command.max_kw}] for an "
            "OCPP 2.0.1 charger: discharging (V2X) needs OCPP 2.1")
    return command


def _watts(kw: float) -> float:
    return round(kw * 1000.0, 1) + 0.0  # OCPP limits accept one decimal; + 0.0 turns -0.0 into 0.0


def encode_set_charging_profile(command: Command, ocpp_version: str, *, now: float,
                                transaction_id: str | None = None, max_offline_s: int = 300) -> dict[str, Any]:
    """The ``SetChargingProfileRequest`` payload (wire camelCase) for one absolute power command.

    A running transaction gets a ``TxProfile`` bound to it; without one the profile is a
    ``TxDefaultProfile`` for the next session on the EVSE. The profile id is the stable one of
    (``envelope.device_id``, EVSE, purpose), so the charger replaces its previous VPP profile with this one;
    the command id rides in ``customData``. ``startSchedule`` is the command's issue time and ``validTo``
    its expiry, after which the charger reverts to its own charging."""
    cmd = validate_for_charger(command, ocpp_version, now)
    if not 1 <= max_offline_s <= 86_400:
        raise CommandError(f"max_offline_s = {max_offline_s} is outside the allowed range [1, 86400]")
    env = cmd.envelope
    purpose = "TxProfile" if transaction_id else "TxDefaultProfile"
    pid = profile_id_for(env.device_id, purpose)
    if cmd.setpoint_kw >= 0:
        period: dict[str, Any] = {"startPeriod": 0, "limit": _watts(cmd.setpoint_kw)}
    else:  # OCPP 2.1 V2X: follow the (negative) setpoint, never beyond the command's range
        period = {"startPeriod": 0, "operationMode": "CentralSetpoint", "setpoint": _watts(cmd.setpoint_kw),
                  "dischargeLimit": _watts(min(cmd.min_kw, 0.0)), "limit": _watts(max(cmd.max_kw, 0.0))}
    profile: dict[str, Any] = {
        "id": pid,
        "stackLevel": 0,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Absolute",
        "validTo": iso_utc(env.valid_until),
        "chargingSchedule": [{"id": pid, "startSchedule": iso_utc(env.issued_at), "chargingRateUnit": "W",
                              "chargingSchedulePeriod": [period]}],
        "customData": {"vendorId": VENDOR_ID, "commandId": env.command_id},
    }
    if transaction_id:
        profile["transactionId"] = transaction_id
    if ocpp_version == OCPP21:
        profile["maxOfflineDuration"] = int(max_offline_s)
        profile["invalidAfterOfflineDuration"] = True  # a stale setpoint never comes back after a reconnect
    return {"evseId": EVSE_ID, "chargingProfile": profile}


async def check_against_schema(payload: dict[str, Any], ocpp_version: str,
                               action: str = "SetChargingProfile") -> None:
    """Validate a request payload with the ocpp package's JSON schema for this version (raises OCPPError)."""
    await validate_payload(Call(unique_id="schema-check", action=action, payload=payload), ocpp_version)


# ------------------------------------------------------------------------------------------ rate limit


@dataclass(frozen=True)
class RateLimit:
    """At most ``max_commands`` commands per charger in any ``window_s`` seconds (excess refused locally)."""

    max_commands: int = 6
    window_s: float = 60.0

    def __post_init__(self) -> None:
        if not (isinstance(self.max_commands, int) and 1 <= self.max_commands <= 10_000):
            raise ValueError(f"max_commands = {self.max_commands} is outside the allowed range [1, 10000]")
        if not (math.isfinite(self.window_s) and 0 < self.window_s <= 86_400):
            raise ValueError(f"window_s = {self.window_s} is outside the allowed range (0, 86400]")


class SlidingWindow:
    """Sliding-window counter: a slot is taken per command sent and frees ``window_s`` after it."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float]) -> None:
        self.limit = limit
        self._clock = clock
        self._sent: deque[float] = deque()

    def try_take(self) -> float:
        """0.0 and a slot taken, or the seconds until the next slot frees (nothing taken)."""
        now = self._clock()
        while self._sent and self._sent[0] <= now - self.limit.window_s:
            self._sent.popleft()
        if len(self._sent) >= self.limit.max_commands:
            return self._sent[0] + self.limit.window_s - now
        self._sent.append(now)
        return 0.0


# ------------------------------------------------------------------------------------- idempotency

_REMEMBER = 4096  # accepted command ids remembered per charger


@dataclass(frozen=True)
class _Applied:
    command_id: str
    issued_at: float
    target: tuple[Any, ...]  # (session, transaction id): where the charger holds the profile


class CommandLedger:
    """Which commands one charger accepted: the newest (in force) and the ids seen before it.

    A conformant charger replaces the VPP's profile whenever the stable profile id arrives again
    (K01.FR.05), whatever command it carries; so the CSMS, not the charger, must make a resend harmless:

    * the newest accepted command id again, to the same session and transaction: acknowledged, not sent;
      to a new session or transaction (the charger's profile for it may be gone) it is sent again;
    * an older accepted command id (superseded since): acknowledged as already applied, not sent;
    * a command never accepted but issued before the newest accepted one: refused, not sent, so a late
      command never overrides a newer one.

    Only an ``Accepted`` answer is recorded: a rejected or unanswered command may be sent again."""

    def __init__(self, remember: int = _REMEMBER) -> None:
        self.latest: _Applied | None = None
        self._order: deque[str] = deque()
        self._ids: set[str] = set()
        self._remember = remember

    def check(self, command_id: str, issued_at: float, target: tuple[Any, ...]) -> CommandAck | None:
        """A ``CommandAck`` when the command must not be sent; ``None`` when it must."""
        latest = self.latest
        if latest is None:
            return None
        if command_id == latest.command_id:
            if target == latest.target:
                return CommandAck(command_id, True, "already applied (repeated command_id); not sent again")
            return None
        if command_id in self._ids:
            return CommandAck(command_id, True, f"already applied (repeated command_id), since superseded by "
                                                f"{latest.command_id}; not sent again")
        if issued_at < latest.issued_at:
            return CommandAck(command_id, False, f"stale: issued_at = {issued_at} is before that of "
                                                 f"{latest.command_id} ({latest.issued_at}), which is in force; "
                                                 "not sent")
        return None

    def record(self, command_id: str, issued_at: float, target: tuple[Any, ...]) -> None:
        """The charger accepted this command: it is the one in force now."""
        self.latest = _Applied(command_id, issued_at, target)
        if command_id not in self._ids:
            self._ids.add(command_id)
            self._order.append(command_id)
            while len(self._order) > self._remember:
                self._ids.discard(self._order.popleft())


# ------------------------------------------------------------------------------------------- security

_PW_MIN, _PW_MAX = 16, 40  # OCPP 2.0.1 BasicAuthPassword: 16..40 characters


class PasswordStore:
    """Charge point passwords for HTTP Basic auth (security profile 2); never printed, logged or repr'd."""

    def __init__(self, passwords: Mapping[str, str] | None = None, shared: str | None = None) -> None:
        for where, pw in [*((f"password for {cid!r}", p) for cid, p in (passwords or {}).items()),
                          *((("shared password", shared),) if shared is not None else ())]:
            if not _PW_MIN <= len(pw) <= _PW_MAX:
                raise ValueError(f"{where}: length {len(pw)} is outside the allowed range [{_PW_MIN}, {_PW_MAX}]")
        self._per_charger = {cid: p.encode() for cid, p in (passwords or {}).items()}
        self._shared = shared.encode() if shared is not None else None

    @classmethod
    def from_env(cls, var: str) -> PasswordStore:
        """One password shared by every charge point, from an environment variable."""
        value = os.environ.get(var)
        if not value:
            raise ValueError(f"environment variable {var} (the charge point password) is unset or empty")
        return cls(shared=value.strip())

    @classmethod
    def from_file(cls, path: str | Path) -> PasswordStore:
        """Per-charger passwords, one ``charger_id:password`` per line (``#`` comments and blanks skipped)."""
        passwords: dict[str, str] = {}
        for n, line in enumerate(Path(path).read_text().splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            cid, sep, pw = line.partition(":")
            if not sep or not _ID_RE.fullmatch(cid):
                raise ValueError(f"{path}:{n}: expected 'charger_id:password' with an OCPP identity of "
                                 "1-48 characters [A-Za-z0-9._-]")  # the line itself is not echoed
            passwords[cid] = pw
        return cls(passwords)

    def check(self, charger_id: str, password: str) -> bool:
        expected = self._per_charger.get(charger_id, self._shared)
        return expected is not None and hmac.compare_digest(expected, password.encode())

    def __repr__(self) -> str:
        return f"PasswordStore(<{len(self._per_charger)} per-charger, shared={'set' if self._shared else 'unset'}>)"


@dataclass(frozen=True)
class CsmsSecurity:
    """OCPP security profile 2 (TLS + Basic auth) or 3 (TLS + client certificate)."""

    profile: int
    ssl_context: ssl.SSLContext
    passwords: PasswordStore | None = None

    def __post_init__(self) -> None:
        if self.profile not in (2, 3):
            raise ValueError(f"profile = {self.profile} is not an allowed security profile (2 or 3)")
        if self.profile == 2 and self.passwords is None:
            raise ValueError("passwords: security profile 2 needs a PasswordStore")
        if self.profile == 3 and self.ssl_context.verify_mode != ssl.CERT_REQUIRED:
            raise ValueError("ssl_context: security profile 3 needs verify_mode CERT_REQUIRED (client certs)")


def server_ssl_context(certfile: str | Path, keyfile: str | Path,
                       client_ca: str | Path | None = None) -> ssl.SSLContext:
    """The CSMS's TLS context (TLS >= 1.2); with ``client_ca`` it requires client certs from that CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(certfile), str(keyfile))
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=str(client_ca))
    return ctx


class RedactAuthorization(logging.Filter):
    """Drops the value of an Authorization header from websockets' debug handshake logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and str(args[0]).lower() == "authorization":
            record.args = (args[0], "<redacted>")
        return True


def redacting_logger(name: str) -> logging.Logger:
    """A logger for websockets connections whose handshake debug lines never carry credentials."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactAuthorization) for f in logger.filters):
        logger.addFilter(RedactAuthorization())
    return logger


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        user, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def _charger_id_from_path(path: str) -> str | None:
    last = urllib.parse.unquote(path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1])
    return last if _ID_RE.fullmatch(last) else None


def _peer_common_name(connection: ServerConnection) -> str | None:
    cert = connection.transport.get_extra_info("peercert") if connection.transport else None
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


# ------------------------------------------------------------------------------------------- telemetry


SOC_MEASURANDS = ("SoC", "Display.PresentSOC")  # percent; the 2.1 Display.* one is ISO 15118-20's PresentSOC
CAPACITY_MEASURAND = "Display.BatteryEnergyCapacity"  # OCPP 2.1 only (ISO 15118-20 DisplayParameters)
_PHASE_OF = {"L1": 1, "L2": 2, "L3": 3, "L1-N": 1, "L2-N": 2, "L3-N": 3}  # per-phase power; L1-L2 etc. ignored
_DEFAULT_MEASURAND = "Energy.Active.Import.Register"  # SampledValue.measurand default (OCPP 2.0.1 / 2.1)


def _scaled(sample: Mapping[str, Any]) -> tuple[float, str]:
    """A sampled value in base units: W, Wh or Percent (unitOfMeasure multiplier and k-prefix applied)."""
    unit_of_measure = sample.get("unit_of_measure") or {}
    unit = unit_of_measure.get("unit", "Wh")
    value = float(sample["value"]) * 10.0 ** int(unit_of_measure.get("multiplier", 0))
    if unit in ("kW", "kWh"):
        value, unit = value * 1000.0, unit[1:]
    return value, unit


def _measurand(sample: Mapping[str, Any]) -> str:
    return sample.get("measurand") or _DEFAULT_MEASURAND


def power_w(samples: list[Mapping[str, Any]], measurand: str) -> float | None:
    """One power measurand of one meterValue, in W: the overall value (no ``phase``: "When phase is absent,
    the measured value is interpreted as an overall value") when the charger reports one, else the sum of
    its per-phase samples L1 + L2 + L3 (L1-N etc. count as their phase, once each). Samples from one
    location only: ``Outlet`` (the default) when present, so an Inlet meter is not added to it."""
    mine = [s for s in samples if _measurand(s) == measurand]
    if not mine:
        return None
    locations = [s.get("location") or "Outlet" for s in mine]
    where = "Outlet" if "Outlet" in locations else locations[0]
    mine = [s for s, loc in zip(mine, locations) if loc == where]
    overall = [s for s in mine if not s.get("phase")]
    if overall:
        return _scaled(overall[-1])[0]
    per_phase: dict[int, float] = {}
    for s in mine:
        phase = _PHASE_OF.get(s["phase"])
        if phase is not None:
            per_phase.setdefault(phase, _scaled(s)[0])
    return math.fsum(per_phase.values()) if per_phase else None


def _positive(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and x > 0 else None


def _vendor(sample: Mapping[str, Any]) -> Mapping[str, Any]:
    extra = sample.get("custom_data") or {}
    return extra if extra.get("vendor_id") == VENDOR_ID else {}


def ev_capacity_wh(meter_values: list[Mapping[str, Any]]) -> float | None:
    """The EV battery capacity (Wh) in the newest meterValue that reports one, or ``None``.

    Standard first: OCPP 2.1's ``Display.BatteryEnergyCapacity`` measurand. OCPP 2.0.1 has no measurand for
    it (a 2.0.1 charger reports it only for ISO 15118-2 DC charging, as ``evEnergyCapacity`` in
    NotifyEVChargingNeeds, which the CSMS also reads); as a fallback this reads the VPP vendor field
    ``customData.batteryCapacityWh`` (vendorId ``VENDOR_ID``) on the SoC sample, which the simulator sends
    on 2.0.1 and a third-party charger never will."""
    for mv in sorted(meter_values, key=lambda mv: parse_iso(mv["timestamp"]), reverse=True):
        samples = mv.get("sampled_value", [])
        for s in samples:
            if _measurand(s) == CAPACITY_MEASURAND and (cap := _positive(_scaled(s)[0])) is not None:
                return cap
        for s in samples:
            if _measurand(s) in SOC_MEASURANDS and (cap := _positive(_vendor(s).get("battery_capacity_wh"))):
                return cap
    return None


def soc_pct(samples: list[Mapping[str, Any]]) -> float | None:
    """The EV's state of charge (percent) in one meterValue: ``SoC``, else 2.1 ``Display.PresentSOC``."""
    for measurand in SOC_MEASURANDS:
        for s in samples:
            if _measurand(s) == measurand:
                value = _scaled(s)[0]
                return value if math.isfinite(value) else None
    return None


def telemetry_from_meter_values(charger_id: str, meter_values: list[Mapping[str, Any]], connected: bool,
                                ev_capacity_wh_known: float | None = None) -> Telemetry | None:
    """The loop's ``Telemetry`` from the newest OCPP meterValue (snake_case, as the ocpp handlers get it).

    Power is Power.Active.Import - Power.Active.Export (kW, + = from the grid), each the overall sample or
    the sum of the per-phase ones (``power_w``). State: ``connected`` (0/1); ``soc_frac`` from the standard
    ``SoC`` measurand (percent / 100); ``soc_kwh`` (energy in the EV battery) = soc_frac x the battery
    capacity, which comes from these meter values (``ev_capacity_wh``) or, failing that,
    ``ev_capacity_wh_known`` (what the session learned before: an earlier meterValue of this transaction or
    NotifyEVChargingNeeds). With a SoC but no capacity there is no ``soc_kwh``: the dispatcher's telemetry
    gate then finds the state missing and does not command the charger until a capacity is known. Without
    an EV (``connected`` false) ``soc_kwh`` is 0."""
    if not meter_values:
        return None
    newest = max(meter_values, key=lambda mv: parse_iso(mv["timestamp"]))
    samples = newest.get("sampled_value", [])
    imp, exp = power_w(samples, "Power.Active.Import"), power_w(samples, "Power.Active.Export")
    if imp is None and exp is None:
        return None
    state: dict[str, float] = {"connected": 1.0 if connected else 0.0}
    capacity = ev_capacity_wh(meter_values) or _positive(ev_capacity_wh_known)
    pct = soc_pct(samples)
    if pct is not None:
        state["soc_frac"] = pct / 100.0
        if capacity is not None:
            state["soc_kwh"] = pct / 100.0 * capacity / 1000.0
    if capacity is not None:
        state["capacity_kwh"] = capacity / 1000.0
    if not connected:
        state.setdefault("soc_kwh", 0.0)
    power_kw = ((imp or 0.0) - (exp or 0.0)) / 1000.0
    return Telemetry(charger_id, parse_iso(newest["timestamp"]), power_kw, state)


# --------------------------------------------------------------------------------------------- server


class ChargerSession:
    """One connected charge point: negotiated version, running transaction, the EV's battery capacity (when
    the charger reported one for the EV plugged in now) and latest telemetry."""

    def __init__(self, charger_id: str, version: str, connection: ServerConnection) -> None:
        self.charger_id = charger_id
        self.version = version
        self.connection = connection
        self.cp: _ChargePoint201 | _ChargePoint21 | None = None
        self.booted = False
        self.open = True
        self.transaction_id: str | None = None
        self.ev_capacity_wh: float | None = None
        self.telemetry: Telemetry | None = None
        self.telemetry_changed = asyncio.Event()

    def record(self, meter_values: list[Mapping[str, Any]] | None) -> None:
        capacity = ev_capacity_wh(meter_values or [])
        if capacity is not None:
            self.ev_capacity_wh = capacity
        tel = telemetry_from_meter_values(self.charger_id, meter_values or [], self.transaction_id is not None,
                                          self.ev_capacity_wh)
        if tel is not None and (self.telemetry is None or tel.measured_at >= self.telemetry.measured_at):
            self.telemetry = tel
            self.telemetry_changed.set()


class _CsmsHandlers:
    """What the CSMS answers to a charge point's requests (shared by the 2.0.1 and 2.1 classes)."""

    session: ChargerSession
    csms: Csms
    _call_result: Any

    @on("BootNotification")
    def on_boot_notification(self, charging_station: dict, reason: str, **_: Any) -> Any:
        self.session.booted = True
        return self._call_result.BootNotification(current_time=iso_utc(self.csms.clock()),
                                                  interval=HEARTBEAT_S, status="Accepted")

    @after("BootNotification")
    async def after_boot_notification(self, **_: Any) -> None:
        await self.csms._booted()

    @on("Heartbeat")
    def on_heartbeat(self, **_: Any) -> Any:
        return self._call_result.Heartbeat(current_time=iso_utc(self.csms.clock()))

    @on("StatusNotification")
    def on_status_notification(self, **_: Any) -> Any:
        return self._call_result.StatusNotification()

    @on("TransactionEvent")
    def on_transaction_event(self, event_type: str, timestamp: str, transaction_info: dict,
                             meter_value: list | None = None, **_: Any) -> Any:
        session = self.session
        ended = event_type == "Ended"
        tx = transaction_info["transaction_id"]
        if not ended and session.transaction_id not in (None, tx):  # another EV's transaction: forget the old EV
            session.ev_capacity_wh = None
        session.transaction_id = None if ended else tx
        session.record(meter_value)
        if ended:
            session.ev_capacity_wh = None  # the EV left; the next one reports its own
        if ended and not meter_value:  # unplugged: nothing flows, no EV battery behind the charger
            session.telemetry = Telemetry(session.charger_id, parse_iso(timestamp), 0.0,
                                          {"connected": 0.0, "soc_kwh": 0.0})
            session.telemetry_changed.set()
        return self._call_result.TransactionEvent()

    @on("MeterValues")
    def on_meter_values(self, evse_id: int, meter_value: list, **_: Any) -> Any:
        self.session.record(meter_value)
        return self._call_result.MeterValues()

    @on("NotifyEVChargingNeeds")
    def on_notify_ev_charging_needs(self, evse_id: int, charging_needs: dict, **_: Any) -> Any:
        """ISO 15118-2 DC charging reports the EV's battery capacity (``evEnergyCapacity``, Wh): keep it for
        ``soc_kwh``. "Accepted" says the CSMS processed the message (the schema's definition); the VPP's
        next command is the charging profile for it."""
        dc = charging_needs.get("dc_charging_parameters") or {}
        capacity = _positive(dc.get("ev_energy_capacity"))
        if evse_id == EVSE_ID and capacity is not None:
            self.session.ev_capacity_wh = capacity
        return self._call_result.NotifyEVChargingNeeds(status="Accepted")


class _Csms201(_CsmsHandlers, _ChargePoint201):
    def __init__(self, session: ChargerSession, csms: Csms) -> None:
        super().__init__(session.charger_id, session.connection, response_timeout=30)
        self.session, self.csms = session, csms


class _Csms21(_CsmsHandlers, _ChargePoint21):
    def __init__(self, session: ChargerSession, csms: Csms) -> None:
        super().__init__(session.charger_id, session.connection, response_timeout=30)
        self.session, self.csms = session, csms


class Csms:
    """The VPP's OCPP server: accepts authenticated charge points and hands out a ``DeviceLink`` each.

    ``clock`` (unix seconds) judges command expiry and stamps responses; ``monotonic`` drives the rate
    limit. Both are injectable so a demo or test can run on simulated time."""

    def __init__(self, security: CsmsSecurity, *, rate_limit: RateLimit = RateLimit(), max_offline_s: int = 300,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 logger_name: str = "vpprl.ocpp.csms") -> None:
        if not 1 <= max_offline_s <= 86_400:
            raise ValueError(f"max_offline_s = {max_offline_s} is outside the allowed range [1, 86400]")
        self.security = security
        self.rate_limit = rate_limit
        self.max_offline_s = max_offline_s
        self.clock = clock
        self.monotonic = monotonic
        self.logger = redacting_logger(logger_name)
        self.sessions: dict[str, ChargerSession] = {}
        self._limiters: dict[str, SlidingWindow] = {}
        self._ledgers: dict[str, CommandLedger] = {}  # per charger; kept across its reconnects
        self._arrivals = asyncio.Condition()
        self._server: Server | None = None
        self.host, self.port = "", 0
        self.refused: list[tuple[str, int]] = []  # (charger id or path, HTTP status) of refused handshakes

    # -- lifecycle
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen (port 0 = an ephemeral port); returns the port."""
        self._server = await serve(self._handle, host, port, ssl=self.security.ssl_context,
                                   subprotocols=list(SUBPROTOCOLS), process_request=self._authenticate,
                                   logger=self.logger)
        self.host, self.port = host, int(self._server.sockets[0].getsockname()[1])
        return self.port

    def url(self, charger_id: str) -> str:
        """Where a charge point connects: ``wss://host:port/ocpp/<identity>``."""
        return f"wss://{self.host}:{self.port}/ocpp/{urllib.parse.quote(charger_id)}"

    async def stop(self) -> None:
        """Close every charger connection and stop listening (chargers then count their offline time)."""
        if self._server is not None:
            self._server.close()
            await asyncio.wait_for(self._server.wait_closed(), timeout=10.0)
            self._server = None

    def link(self, charger_id: str) -> OcppChargerLink:
        if not _ID_RE.fullmatch(charger_id):
            raise ValueError(f"charger_id = {charger_id!r} is not an OCPP identity (1-48 of [A-Za-z0-9._-])")
        return OcppChargerLink(self, charger_id)

    async def wait_connected(self, charger_id: str, timeout_s: float) -> ChargerSession:
        """Wait for a booted, open session of this charger (``TimeoutError`` after ``timeout_s``)."""
        async def ready() -> ChargerSession:
            async with self._arrivals:
                await self._arrivals.wait_for(lambda: self._live(charger_id) is not None)
            session = self._live(charger_id)
            assert session is not None
            return session
        return await asyncio.wait_for(ready(), timeout_s)

    def _live(self, charger_id: str) -> ChargerSession | None:
        session = self.sessions.get(charger_id)
        return session if session is not None and session.open and session.booted else None

    def limiter(self, charger_id: str) -> SlidingWindow:
        if charger_id not in self._limiters:
            self._limiters[charger_id] = SlidingWindow(self.rate_limit, self.monotonic)
        return self._limiters[charger_id]

    def ledger(self, charger_id: str) -> CommandLedger:
        if charger_id not in self._ledgers:
            self._ledgers[charger_id] = CommandLedger()
        return self._ledgers[charger_id]

    # -- handshake
    def _refuse(self, connection: ServerConnection, who: str, status: int, text: str) -> Response:
        self.refused.append((who, status))
        self.logger.warning("refused charge point %s: HTTP %d %s", who, status, text)
        response = connection.respond(status, text + "\n")
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Basic realm="ocpp", charset="UTF-8"'
        return response

    def _authenticate(self, connection: ServerConnection, request: Request) -> Response | None:
        charger_id = _charger_id_from_path(request.path)
        if charger_id is None:
            return self._refuse(connection, request.path[:64], 404, "no charge point identity in the path")
        if self.security.profile == 3:
            common_name = _peer_common_name(connection)
            if common_name != charger_id:
                return self._refuse(connection, charger_id, 403, "client certificate CN does not match identity")
            return None
        creds = _basic_credentials(request.headers.get("Authorization"))
        assert self.security.passwords is not None
        if creds is None or creds[0] != charger_id or not self.security.passwords.check(*creds):
            return self._refuse(connection, charger_id, 401, "basic auth failed")
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        charger_id = _charger_id_from_path(connection.request.path)
        version = SUBPROTOCOLS.get(connection.subprotocol or "")
        if charger_id is None or version is None:
            await connection.close(1002, "an OCPP 2.0.1 or 2.1 subprotocol is required")
            return
        session = ChargerSession(charger_id, version, connection)
        session.cp = (_Csms21 if version == OCPP21 else _Csms201)(session, self)
        old = self.sessions.get(charger_id)
        self.sessions[charger_id] = session
        if old is not None and old.open:  # a reconnect replaces the old connection
            await old.connection.close(1000, "replaced by a new connection")
        self.logger.info("charge point %s connected (OCPP %s)", charger_id, version)
        try:
            await session.cp.start()
        except ConnectionClosed:
            pass
        finally:
            session.open = False
            session.telemetry_changed.set()  # a read() waiting on this charger fails now, not at its timeout
            self.logger.info("charge point %s disconnected", charger_id)

    async def _booted(self) -> None:
        async with self._arrivals:
            self._arrivals.notify_all()


# ----------------------------------------------------------------------------------------------- link


class OcppChargerLink(DeviceLink):
    """The dispatch loop's handle on one charge point behind the CSMS."""

    def __init__(self, csms: Csms, charger_id: str) -> None:
        self.csms = csms
        self.device_id = charger_id

    def _session(self) -> ChargerSession:
        session = self.csms._live(self.device_id)
        if session is None:
            raise ConnectionError(f"charge point {self.device_id} is not connected")
        return session

    async def send(self, command: Command, timeout_s: float) -> CommandAck:
        """Validate, de-duplicate (``CommandLedger``), rate-limit, encode and send; the charger's
        SetChargingProfile answer as a CommandAck. A repeated or stale command is answered here, unsent,
        and takes no rate-limit slot."""
        _check_timeout(timeout_s)
        now = self.csms.clock()
        command = validate_for_charger(command, OCPP21, now)  # version-free checks come before reachability
        env = command.envelope
        cid = env.command_id
        if env.device_id != self.device_id:
            raise CommandError(f"device_id = {env.device_id!r} does not match this link ({self.device_id!r})")
        session = self._session()
        transaction_id = session.transaction_id
        payload = encode_set_charging_profile(command, session.version, now=now, transaction_id=transaction_id,
                                              max_offline_s=self.csms.max_offline_s)
        try:
            await check_against_schema(payload, session.version)
        except OCPPError as e:  # an encoder bug, never a device answer: do not send it
            raise CommandError(f"SetChargingProfile fails the OCPP {session.version} schema: {e}") from e
        ledger, target = self.csms.ledger(self.device_id), (session, transaction_id)
        if (answered := ledger.check(cid, env.issued_at, target)) is not None:
            return answered
        wait = self.csms.limiter(self.device_id).try_take()
        if wait > 0:
            limit = self.csms.rate_limit
            return CommandAck(cid, False, f"rate limit: at most {limit.max_commands} commands per "
                                          f"{limit.window_s:g} s to {self.device_id}; next slot in {wait:.1f} s")
        assert session.cp is not None
        request = session.cp._call.SetChargingProfile(evse_id=payload["evseId"],
                                                     charging_profile=payload["chargingProfile"])
        try:
            result = await asyncio.wait_for(session.cp.call(request, suppress=False), timeout_s)
        except ConnectionClosed as e:
            raise ConnectionError(f"charge point {self.device_id} disconnected: {e}") from e
        except asyncio.TimeoutError:
            if not session.open:  # it went away while we waited for its answer
                raise ConnectionError(f"charge point {self.device_id} disconnected before answering") from None
            raise TimeoutError(f"charge point {self.device_id} did not answer within {timeout_s} s") from None
        except OCPPError as e:
            return CommandAck(cid, False, f"charger answered CallError {type(e).__name__}: {e.description}")
        info = result.status_info or {}
        reason = ": ".join(str(x) for x in (info.get("reason_code"), info.get("additional_info")) if x)
        if result.status == "Accepted":
            ledger.record(cid, env.issued_at, target)
        return CommandAck(cid, result.status == "Accepted", reason)

    async def read(self, timeout_s: float) -> Telemetry:
        """The latest telemetry (waits up to ``timeout_s`` for the first one after connecting)."""
        _check_timeout(timeout_s)
        session = self._session()
        if session.telemetry is None:
            session.telemetry_changed.clear()
            await asyncio.wait_for(session.telemetry_changed.wait(), timeout_s)
            session = self._session()
            if session.telemetry is None:
                raise TimeoutError(f"no telemetry from charge point {self.device_id}")
        return session.telemetry

    async def close(self) -> None:
        """Nothing to release: the connection belongs to the charger and the CSMS."""


def _check_timeout(timeout_s: float) -> None:
    if not (math.isfinite(timeout_s) and 0 < timeout_s <= 600):
        raise ValueError(f"timeout_s = {timeout_s} is outside the allowed range (0, 600]")
