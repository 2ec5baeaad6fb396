"""The VPP as an OpenADR 2.0b VTN (openleadr): commercial sites and smart thermostats as VEN resources.

Security: every VEN is enrolled out of band with its venID, venName and certificate fingerprint. The
VTN serves HTTPS only, requires a client certificate from its CA (mutual TLS), and openleadr checks on
every message that the TLS certificate *and* the certificate that signed the XML (XMLDSig with replay
protection) both carry the enrolled fingerprint (``ven_lookup``). A VEN must present its enrolled venID
when it registers, so registration is authenticated like every later message; an unknown venID, a
different certificate or a message signed with another key is refused. Key paths and the key passphrase
come from files / environment variables (``VtnConfig.from_env``) and are never logged.

Encoding (OpenADR 2.0b profile, signal table):

* ``PowerCommand`` (site) -> signalName ``LOAD_DISPATCH``, signalType ``setpoint``, itemBase powerReal
  in W with siScaleCode ``k`` (payload in kW). LOAD_DISPATCH/setpoint is the 2.0b signal whose payload
  is an absolute power level; LOAD_CONTROL/x-loadControlCapacity is a 0..1 fraction of the load's
  capacity (the VTN would need each site's capacity to express kW) and SIMPLE is 0..3 levels.
* ``ThermostatCommand`` -> ``LOAD_CONTROL`` / ``x-loadControlLevelOffset``: an offset from normal
  operation (0 = the occupant's own setpoint), which is what the command is. The spec makes those
  levels integers, so the itemBase is temperature in celsius with siScaleCode ``d``: the payload is the
  offset in integer tenths of a degree (1.5 degC -> 15). x-loadControlSetpoint would be an absolute
  setpoint, which would overwrite the occupant's own choice instead of shifting it.

Every command is one event with one interval: dtstart = ``issued_at`` (now, when the loop issues it),
duration = ``valid_until - issued_at`` rounded down to whole seconds (RFC 5545 durations as openleadr
writes them have no fractions; rounding down keeps the event from outlasting ``valid_until``). The
eventID is a hash of ``command_id``, so a resend finds the same event and creates none; a new command
for the same resource supersedes the previous event by cancelling it (eventStatus ``cancelled`` with
its modificationNumber incremented, the OpenADR rule for any change to an event). The VEN's
optIn/optOut (oadrCreatedEvent) becomes the ``CommandAck``.

Telemetry: VENs register TELEMETRY_USAGE reports; report resource ``<device_id>`` carries powerReal
(kW), ``<device_id>#temp_c`` / ``#setpoint_c`` temperatures (degC) and ``#backlog_kwh`` energyReal
(kWh). ``read()`` returns the latest values with the VEN's own interval time stamps.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import time
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import ClassVar, Literal, Self

from aiohttp import web
from aiohttp.web_exceptions import NotAppKeyWarning
from openleadr import OpenADRServer, enums, objects, utils

from ..commands import (
    Command,
    CommandAck,
    CommandError,
    DeviceLink,
    PowerCommand,
    Telemetry,
    ThermostatCommand,
)

logger = logging.getLogger(__name__)

Kind = Literal["site", "thermostat"]

MARKET_CONTEXT = "oadr://vpprl/dispatch"
SITE_SIGNAL = (enums.SIGNAL_NAME.LOAD_DISPATCH, enums.SIGNAL_TYPE.SETPOINT)
THERMOSTAT_SIGNAL = (enums.SIGNAL_NAME.LOAD_CONTROL, enums.SIGNAL_TYPE.X_LOAD_CONTROL_LEVEL_OFFSET)
OFFSET_STEP_C = 0.1  # one x-loadControlLevelOffset level (siScaleCode "d")
TIME_EPS_S = 1e-6  # OpenADR date-times travel with microsecond resolution
RESOURCE_FIELD_SEP = "#"  # report resource "<device_id>#<state key>"; the bare device id carries power

# SI scale codes (emix siscale) as powers of ten
SI_SCALE = {"p": -12, "n": -9, "micro": -6, "m": -3, "c": -2, "d": -1, "none": 0, "k": 3, "M": 6, "G": 9, "T": 12}


def power_item() -> objects.Measurement:
    """itemBase of the site signal and of power reports: real power in W, scaled to kW."""
    return objects.Measurement(name="powerReal", description="RealPower", unit="W", scale="k",
                               power_attributes=objects.PowerAttributes(hertz=50, voltage=230, ac=True))


def offset_item() -> objects.Measurement:
    """itemBase of the thermostat signal: temperature in celsius, in tenths of a degree."""
    return objects.Measurement(name="temperature", description="temperature", unit="celsius", scale="d")


def event_id_for(command_id: str) -> str:
    """A stable, XML-safe eventID for a command: the same command_id always maps to the same event."""
    return "cmd-" + hashlib.sha256(command_id.encode("utf-8")).hexdigest()[:32]


def scaled_value(value: float, scale: str | None) -> float:
    """A payload in base units (W, Wh, degC) from its value and emix siScaleCode."""
    if (scale or "none") not in SI_SCALE:
        raise ValueError(f"siScaleCode {scale!r} is not one of {sorted(SI_SCALE)}")
    exponent = SI_SCALE[scale or "none"]
    # dividing by an exact power of ten keeps decimal payloads exact (15 tenths -> 1.5, not 1.5000000000000002)
    return float(value) * 10**exponent if exponent >= 0 else float(value) / 10**-exponent


def encode_command(command: Command, ven_id: str, now: float) -> objects.Event:
    """The OpenADR event for one validated, unexpired command (see the module docstring)."""
    command.validate()
    env = command.envelope
    if env.valid_until <= now:
        raise CommandError(f"valid_until = {env.valid_until} has passed (now = {now:.3f}); the command expired")
    duration_s = math.floor(env.valid_until - env.issued_at + TIME_EPS_S)  # absorb float error, not a second
    if duration_s < 1:
        raise CommandError(f"valid_until - issued_at = {env.valid_until - env.issued_at} s is outside the allowed "
                           "range [1, inf) s (OpenADR durations are whole seconds)")
    if isinstance(command, PowerCommand):
        (name, stype), item, payload = SITE_SIGNAL, power_item(), float(command.setpoint_kw)
    elif isinstance(command, ThermostatCommand):
        (name, stype), item = THERMOSTAT_SIGNAL, offset_item()
        payload = float(round(command.offset_c / OFFSET_STEP_C))
    else:
        raise CommandError(f"OpenADR carries PowerCommand (sites) and ThermostatCommand, not {type(command).__name__}")
    start = datetime.fromtimestamp(env.issued_at, tz=timezone.utc)
    duration = timedelta(seconds=duration_s)
    interval = objects.Interval(dtstart=start, duration=duration, signal_payload=payload)
    active_period = objects.ActivePeriod(dtstart=start, duration=duration)
    descriptor = objects.EventDescriptor(
        event_id=event_id_for(env.command_id), modification_number=0, market_context=MARKET_CONTEXT,
        event_status=utils.determine_event_status(active_period), priority=1,
        created_date_time=datetime.now(timezone.utc))
    signal = objects.EventSignal(intervals=[interval], signal_name=name, signal_type=stype,
                                 signal_id=event_id_for(env.command_id) + "-0", measurement=item)
    return objects.Event(event_descriptor=descriptor, event_signals=[signal], active_period=active_period,
                         targets=[objects.Target(ven_id=ven_id), objects.Target(resource_id=env.device_id)],
                         response_required="always")


@dataclass(frozen=True)
class VtnConfig:
    """Where the VTN listens and the credentials it serves with (paths only; the passphrase never prints)."""

    vtn_id: str
    cert_path: Path  # signs messages and serves TLS
    key_path: Path
    ca_path: Path  # client certificates must chain to this CA
    key_passphrase: str | None = field(default=None, repr=False)
    host: str = "127.0.0.1"
    port: int = 0  # 0: an ephemeral port, see OpenAdrVtn.url
    poll_interval_s: int = 10  # oadrRequestedOadrPollFreq
    report_interval_s: int = 10  # telemetry sampling interval the VTN requests

    ENV: ClassVar[dict[str, str]] = {
        "vtn_id": "VPP_OADR_VTN_ID", "cert_path": "VPP_OADR_VTN_CERT", "key_path": "VPP_OADR_VTN_KEY",
        "ca_path": "VPP_OADR_CA", "key_passphrase": "VPP_OADR_VTN_KEY_PASSPHRASE", "host": "VPP_OADR_HOST",
        "port": "VPP_OADR_PORT"}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> VtnConfig:
        """Read the VTN's identity and key locations from ``VPP_OADR_*`` environment variables."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name, var in cls.ENV.items():
            if var in environ:
                values[name] = environ[var]
        for name in ("vtn_id", "cert_path", "key_path", "ca_path"):
            if name not in values and name not in overrides:
                raise CommandError(f"environment variable {cls.ENV[name]} ({name}) is not set")
        if "port" in values:
            try:
                values["port"] = int(str(values["port"]))
            except ValueError:
                raise CommandError(f"{cls.ENV['port']} must be an integer in [0, 65535]") from None
        for name in ("cert_path", "key_path", "ca_path"):
            if name in values:
                values[name] = Path(str(values[name]))
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def validate(self) -> None:
        if not self.vtn_id:
            raise CommandError("vtn_id must be non-empty")
        for name in ("cert_path", "key_path", "ca_path"):
            if not Path(getattr(self, name)).is_file():
                raise CommandError(f"{name} = {getattr(self, name)} is not a readable file")
        if not 0 <= self.port <= 65535:
            raise CommandError(f"port = {self.port} is outside the allowed range [0, 65535]")
        if not 1 <= self.poll_interval_s <= 86400:
            raise CommandError(f"poll_interval_s = {self.poll_interval_s} is outside the allowed range [1, 86400]")
        if not 1 <= self.report_interval_s <= 3600:
            raise CommandError(f"report_interval_s = {self.report_interval_s} is outside the allowed range [1, 3600]")


@dataclass
class _Ven:
    ven_id: str
    ven_name: str
    fingerprint: str
    links: dict[str, OpenAdrLink] = field(default_factory=dict)
    registration_id: str | None = None


@dataclass
class _Sent:
    """One command as sent: its content (to spot a reused id) and the future the VEN's opt resolves."""

    content: tuple
    event_id: str
    opt: asyncio.Future


def _check_timeout(timeout_s: float) -> None:
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise CommandError(f"timeout_s = {timeout_s} is outside the allowed range (0, inf)")


def _to_base_unit(unit: str, value: float) -> float:
    """Report values in the units Telemetry uses: W -> kW, Wh -> kWh, degF -> degC."""
    if unit in ("W", "Wh"):
        return value / 1000.0
    if unit == "fahrenheit":
        return (value - 32.0) * 5.0 / 9.0
    return value


_FIELDS = {"power_kw": ("RealPower", ("W",)), "backlog_kwh": ("RealEnergy", ("Wh",)),
           "temp_c": ("temperature", ("celsius", "fahrenheit")), "setpoint_c": ("temperature", ("celsius", "fahrenheit"))}


class OpenAdrLink(DeviceLink):
    """One VEN resource (a site's flexible load or a thermostat) as the dispatch loop sees it."""

    _COMMAND: ClassVar[dict[str, type]] = {"site": PowerCommand, "thermostat": ThermostatCommand}
    _REMEMBERED = 256  # command ids kept for idempotency

    def __init__(self, vtn: OpenAdrVtn, ven_id: str, device_id: str, kind: Kind) -> None:
        if kind not in self._COMMAND:
            raise CommandError(f"kind = {kind!r} is not one of {sorted(self._COMMAND)}")
        self._vtn, self.ven_id, self.device_id, self.kind = vtn, ven_id, device_id, kind
        self._sent: OrderedDict[str, _Sent] = OrderedDict()
        self._live_events: list[str] = []  # event ids of this resource not yet superseded
        self._samples: dict[str, tuple[float, float]] = {}  # field -> (VEN time stamp, value)
        self._changed = asyncio.Event()
        self._closed = False

    async def send(self, command: Command, timeout_s: float) -> CommandAck:
        """Send one command as an event and return the VEN's opt as the ack (a resend is applied once)."""
        _check_timeout(timeout_s)
        if self._closed:
            raise ConnectionError(f"link to {self.device_id} is closed")
        expected = self._COMMAND[self.kind]
        if not isinstance(command, expected):
            raise CommandError(f"a {self.kind} link accepts {expected.__name__}, not {type(command).__name__}")
        if command.envelope.device_id != self.device_id:
            raise CommandError(f"envelope.device_id = {command.envelope.device_id!r} is not this link's "
                               f"device {self.device_id!r}")
        command.validate()
        content = (command.setpoint_kw if isinstance(command, PowerCommand) else command.offset_c,
                   command.envelope.issued_at, command.envelope.valid_until)
        sent = self._sent.get(command.envelope.command_id)
        if sent is not None:
            if sent.content != content:
                raise CommandError(f"command_id = {command.envelope.command_id!r} was already sent with different "
                                   "content; a new decision needs a new command_id")
            return await self._ack(command.envelope.command_id, sent, timeout_s)
        event = encode_command(command, self.ven_id, time.time())
        if not self._vtn.is_registered(self.ven_id):
            raise ConnectionError(f"VEN {self.ven_id} is not registered with the VTN")
        sent = _Sent(content, event.event_descriptor.event_id, asyncio.get_running_loop().create_future())
        self._vtn._supersede(self)
        self._vtn._server.add_raw_event(self.ven_id, event, callback=sent.opt)
        self._live_events.append(sent.event_id)
        self._sent[command.envelope.command_id] = sent
        while len(self._sent) > self._REMEMBERED:
            self._sent.popitem(last=False)
        return await self._ack(command.envelope.command_id, sent, timeout_s)

    async def _ack(self, command_id: str, sent: _Sent, timeout_s: float) -> CommandAck:
        try:
            opt = await asyncio.wait_for(asyncio.shield(sent.opt), timeout_s)
        except asyncio.TimeoutError:
            raise TimeoutError(f"VEN {self.ven_id} did not answer event {sent.event_id} within {timeout_s} s") from None
        if opt == enums.OPT.OPT_IN:
            return CommandAck(command_id, True)
        if opt == "superseded":
            return CommandAck(command_id, False, "superseded by a newer command before the VEN answered")
        return CommandAck(command_id, False, f"VEN answered {opt}")

    async def read(self, timeout_s: float) -> Telemetry:
        """The latest telemetry; waits up to ``timeout_s`` for the first report."""
        return await self.read_newer_than(-math.inf, timeout_s)

    async def read_newer_than(self, after: float, timeout_s: float) -> Telemetry:
        """Telemetry measured (by the VEN's clock) after ``after``, waiting up to ``timeout_s`` for it."""
        _check_timeout(timeout_s)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            changed = self._changed
            telemetry = self.latest()
            if telemetry is not None and telemetry.measured_at > after:
                return telemetry
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"no telemetry from {self.device_id} measured after {after} within {timeout_s} s")
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except asyncio.TimeoutError:
                continue

    def latest(self) -> Telemetry | None:
        """The newest value of each reported field; measured_at is the oldest of their time stamps."""
        if "power_kw" not in self._samples:
            return None
        stamps = [ts for ts, _ in self._samples.values()]
        state = {k: v for k, (_, v) in self._samples.items() if k != "power_kw"}
        return Telemetry(self.device_id, min(stamps), self._samples["power_kw"][1], state)

    async def close(self) -> None:
        self._closed = True
        for sent in self._sent.values():
            if not sent.opt.done():
                sent.opt.cancel()

    def _on_samples(self, key: str, unit: str, scale: str | None, values: list[tuple[datetime, float]]) -> None:
        """openleadr report callback: keep the newest (VEN time stamp, value) and wake readers."""
        for stamp, value in values:
            ts = stamp.timestamp()
            converted = _to_base_unit(unit, scaled_value(value, scale))
            if key not in self._samples or ts >= self._samples[key][0]:
                self._samples[key] = (ts, converted)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


class OpenAdrVtn:
    """The VTN: enrolled VENs, their resources as ``OpenAdrLink`` s, and the openleadr server."""

    def __init__(self, config: VtnConfig) -> None:
        config.validate()
        self.config = config
        self._vens: dict[str, _Ven] = {}
        self._server: OpenADRServer | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # ---- enrollment (out of band, before any VEN connects) ----
    def enroll_ven(self, ven_id: str, ven_name: str, cert_fingerprint: str) -> None:
        """Make a VEN known: only this venID, under this name, with this certificate may register."""
        if not ven_id or not ven_name or not cert_fingerprint:
            raise CommandError("ven_id, ven_name and cert_fingerprint must be non-empty")
        self._vens[ven_id] = _Ven(ven_id, ven_name, cert_fingerprint.upper())

    def add_resource(self, ven_id: str, device_id: str, kind: Kind) -> OpenAdrLink:
        """The DeviceLink for one resource of an enrolled VEN."""
        if ven_id not in self._vens:
            raise CommandError(f"ven_id = {ven_id!r} is not enrolled")
        if not device_id or RESOURCE_FIELD_SEP in device_id:
            raise CommandError(f"device_id = {device_id!r} must be non-empty and free of {RESOURCE_FIELD_SEP!r}")
        link = OpenAdrLink(self, ven_id, device_id, kind)
        self._vens[ven_id].links[device_id] = link
        return link

    def is_registered(self, ven_id: str) -> bool:
        ven = self._vens.get(ven_id)
        return ven is not None and ven.registration_id is not None

    async def wait_registered(self, ven_id: str, timeout_s: float) -> None:
        """Wait until ``ven_id`` has registered (raise TimeoutError after ``timeout_s``)."""
        _check_timeout(timeout_s)
        deadline = time.monotonic() + timeout_s
        while not self.is_registered(ven_id):
            if time.monotonic() > deadline:
                raise TimeoutError(f"VEN {ven_id} did not register within {timeout_s} s")
            await asyncio.sleep(0.02)

    # ---- server lifecycle ----
    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("the VTN is not started")
        return f"https://{self.config.host}:{self._port}/OpenADR2/Simple/2.0b"

    async def start(self) -> None:
        cfg = self.config
        passphrase = cfg.key_passphrase
        with warnings.catch_warnings():  # openleadr stores itself under a plain string app key
            warnings.simplefilter("ignore", NotAppKeyWarning)
            server = OpenADRServer(
                vtn_id=cfg.vtn_id, cert=str(cfg.cert_path), key=str(cfg.key_path), passphrase=passphrase,
                show_fingerprint=False, http_host=cfg.host, http_port=cfg.port, http_cert=str(cfg.cert_path),
                http_key=str(cfg.key_path), http_key_passphrase=passphrase, http_ca_file=str(cfg.ca_path),
                requested_poll_freq=timedelta(seconds=cfg.poll_interval_s), ven_lookup=self._ven_lookup,
                verify_message_signatures=True)
        # openleadr keeps the signer, ven_lookup and the verification switch on the VTNService *class*,
        # shared by every server in the process; pin them on this server's services
        for service in server.services.values():
            service.ven_lookup = self._ven_lookup
            service.verify_message_signatures = True
            service._create_message = type(service)._create_message
        server.add_handler("on_create_party_registration", self._on_create_party_registration)
        server.add_handler("on_cancel_party_registration", self._on_cancel_party_registration)
        server.add_handler("on_register_report", self._on_register_report)
        runner = web.AppRunner(server.app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host=cfg.host, port=cfg.port, ssl_context=server.ssl_context)
        await site.start()
        self._server, self._runner = server, runner
        self._port = runner.addresses[0][1]
        logger.info("OpenADR VTN %s listening on %s", cfg.vtn_id, self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = self._server = None
        self._port = None
        for ven in self._vens.values():
            ven.registration_id = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- openleadr handlers ----
    def _ven_lookup(self, ven_id: str) -> dict | None:
        """openleadr's ven_lookup: the enrolled fingerprint that TLS and message signatures must match."""
        ven = self._vens.get(ven_id)
        if ven is None:
            return None
        return {"ven_id": ven.ven_id, "ven_name": ven.ven_name, "fingerprint": ven.fingerprint,
                "registration_id": ven.registration_id}

    def _on_create_party_registration(self, payload: dict) -> tuple[str, str] | bool:
        ven_id, name, fingerprint = payload.get("ven_id"), payload.get("ven_name"), payload.get("fingerprint")
        ven = self._vens.get(ven_id) if ven_id else None
        if ven is None:
            logger.warning("refused registration of %r: venID %r is not enrolled", name, ven_id)
            return False
        if name != ven.ven_name or fingerprint != ven.fingerprint:
            logger.warning("refused registration of venID %s: name or certificate does not match enrollment", ven_id)
            return False
        ven.registration_id = uuid.uuid4().hex
        logger.info("VEN %s (%s) registered", ven_id, name)
        return ven.ven_id, ven.registration_id

    def _on_cancel_party_registration(self, payload: dict) -> tuple[str, dict]:
        ven = self._vens.get(payload.get("ven_id", ""))
        registration_id = payload.get("registration_id")
        if ven is not None and ven.registration_id == registration_id:
            ven.registration_id = None
        return "oadrCanceledPartyRegistration", {"registration_id": registration_id,
                                                 "ven_id": payload.get("ven_id")}

    def _on_register_report(self, ven_id: str, resource_id: str, measurement: str, unit: str, scale: str,
                            min_sampling_interval: timedelta, max_sampling_interval: timedelta):
        """Request every telemetry field we understand, for resources enrolled under this VEN."""
        ven = self._vens.get(ven_id)
        device_id, sep, key = (resource_id or "").rpartition(RESOURCE_FIELD_SEP)
        if not sep:
            device_id, key = resource_id or "", "power_kw"
        link = ven.links.get(device_id) if ven is not None else None
        spec = _FIELDS.get(key)
        if link is None or spec is None or measurement != spec[0] or unit not in spec[1] \
                or (scale or "none") not in SI_SCALE:
            logger.warning("not requesting report %s (%s in %s) from VEN %s", resource_id, measurement, unit, ven_id)
            return None
        interval = timedelta(seconds=self.config.report_interval_s)
        interval = min(max(interval, min_sampling_interval or interval), max_sampling_interval or interval)

        def on_values(values: list[tuple[datetime, float]]) -> None:
            link._on_samples(key, unit, scale, values)

        return on_values, interval

    def _supersede(self, link: OpenAdrLink) -> None:
        """Cancel the resource's previous events (modificationNumber + 1) and drop ones already over."""
        server = self._server
        if server is None:
            return
        now = datetime.now(timezone.utc)
        queue = server.events.get(link.ven_id, [])
        for event_id in link._live_events:
            event = utils.find_by(queue, "event_descriptor.event_id", event_id)
            if event is None:
                continue
            # openleadr's add_raw_event replaces the active period with a dict: read it either way
            end = utils.getmember(event, "active_period.dtstart") + utils.getmember(event, "active_period.duration")
            if end <= now:
                queue.remove(event)
            else:
                server.cancel_event(link.ven_id, event_id)
            callback = server.event_callbacks.pop(event_id, None)
            if callback is not None and isinstance(callback[1], asyncio.Future) and not callback[1].done():
                callback[1].set_result("superseded")
        link._live_events = []
