"""Simulated OpenADR 2.0b VENs (openleadr clients) backed by the env's device physics.

``FlexLoadVen`` is a commercial site's flexible load (envs/devices/flex_load.py): it follows the
LOAD_DISPATCH kW setpoint of its active event, clipped to what the process allows, and its backlog
grows by (baseline - power) * dt as in ``FlexLoad.step``; without an event it runs its own control
(baseline plus rebound of the backlog). ``ThermostatVen`` (envs/devices/thermostat.py) shifts the
occupant's setpoint by the event's x-loadControlLevelOffset and its own control tracks that setpoint
through the env's exact RC discretisation. Both revert to their own control when the event ends or
is cancelled. Physics advance only by an explicit ``step(dt_s)`` on the VEN's own clock (``now``),
which starts at ``t0``; telemetry is time-stamped with that clock.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path

import numpy as np
from openleadr import OpenADRClient, enums, objects

from ...envs.devices.flex_load import FlexLoad, FlexLoadParams
from ...envs.devices.thermostat import Thermostat, ThermostatParams
from ..protocols.openadr_vtn import (
    OFFSET_STEP_C,
    RESOURCE_FIELD_SEP,
    SITE_SIGNAL,
    THERMOSTAT_SIGNAL,
    TIME_EPS_S,
    power_item,
    scaled_value,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VenCredentials:
    """Who the VEN is and the files it proves that with (the passphrase never prints)."""

    ven_id: str
    ven_name: str
    cert_path: Path
    key_path: Path
    ca_path: Path  # to verify the VTN's TLS certificate
    vtn_fingerprint: str  # to verify the VTN's message signatures
    key_passphrase: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class _Instruction:
    """An opted-in event as the device keeps it: a value over [start, end) on the VEN's clock."""

    value: float
    start: float
    end: float


def _one(value: float) -> np.ndarray:
    """A one-device parameter array for the env's vectorised device classes."""
    return np.array([value], dtype=float)


def _temperature_item() -> objects.Measurement:
    return objects.Measurement(name="temperature", description="temperature", unit="celsius", scale="none")


def _check_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} = {value} is outside the allowed range (0, inf)")


class SimulatedVen:
    """An openleadr client with event bookkeeping; subclasses add the device and its reports."""

    signal: tuple[str, str]
    item_name: str  # itemBase name the signal must carry

    def __init__(self, device_id: str, vtn_url: str, credentials: VenCredentials, t0: float | None = None,
                 poll_interval_s: float | None = None) -> None:
        if not device_id or RESOURCE_FIELD_SEP in device_id:
            raise ValueError(f"device_id = {device_id!r} must be non-empty and free of {RESOURCE_FIELD_SEP!r}")
        if poll_interval_s is not None:
            _check_positive("poll_interval_s", poll_interval_s)
        self.device_id, self.vtn_url, self.credentials = device_id, vtn_url, credentials
        self.now = time.time() if t0 is None else float(t0)
        self.measured_at = self.now
        self.power_kw = 0.0
        self.poll_interval_s = poll_interval_s  # None: poll as often as the VTN asks
        self.events_seen: list[str] = []  # event ids handed to the device, each once (idempotency)
        self._instructions: dict[str, _Instruction] = {}
        self.client: OpenADRClient | None = None
        self.last_refusal = ""  # the VTN's last error answer, for a refused registration's message

    # ---- lifecycle ----
    async def start(self, timeout_s: float = 10.0) -> None:
        """Register with the VTN, offer telemetry, start polling; ConnectionRefusedError if refused."""
        c = self.credentials
        client = self.make_client()
        self.client = client
        await asyncio.wait_for(client.run(), timeout_s)
        if not client.registration_id:
            await self.stop()
            raise ConnectionRefusedError(f"the VTN refused registration of VEN {c.ven_id}: "
                                         f"{self.last_refusal or 'no answer (is the VTN reachable?)'}")
        if self.poll_interval_s is not None:
            for job in client.scheduler.get_jobs():
                if job.func == client._poll:
                    job.reschedule(trigger="interval", seconds=self.poll_interval_s)

    def make_client(self) -> OpenADRClient:
        """The openleadr client with this device's event handlers and telemetry reports."""
        c = self.credentials
        client = OpenADRClient(ven_name=c.ven_name, vtn_url=self.vtn_url, ven_id=c.ven_id, cert=str(c.cert_path),
                               key=str(c.key_path), passphrase=c.key_passphrase, ca_file=str(c.ca_path),
                               vtn_fingerprint=c.vtn_fingerprint, show_fingerprint=False, allow_jitter=False)
        client.add_handler("on_event", self._on_event)
        client.add_handler("on_update_event", self._on_event)
        client.add_hook("after_receive_xml", self._note_http_refusal)
        client.add_hook("after_parse_xml", self._note_refusal)
        for key, item in self._report_fields().items():
            resource = self.device_id if key == "power_kw" else f"{self.device_id}{RESOURCE_FIELD_SEP}{key}"
            client.add_report(partial(self._sample, key), resource_id=resource, measurement=item,
                              report_specifier_id=f"{self.device_id}-telemetry", r_id=key,
                              report_name=enums.REPORT_NAME.TELEMETRY_USAGE, scale=item.scale,
                              report_duration=timedelta(hours=1),
                              sampling_rate=objects.SamplingRate(min_period=timedelta(seconds=1),
                                                                 max_period=timedelta(hours=1), on_change=True))
        return client

    def _note_http_refusal(self, content: str) -> None:
        """A VTN that refuses at the HTTP level (e.g. 403 for a bad signature) answers in plain text."""
        if content and not content.lstrip().startswith("<"):
            self.last_refusal = f"HTTP: {content[:200]}"

    def _note_refusal(self, message_type: str, payload: dict) -> None:
        response = payload.get("response") or {}
        if response.get("response_code") not in (None, 200):
            self.last_refusal = f"{response['response_code']} {response.get('response_description', '')}"

    async def stop(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        if client.scheduler.running:
            client.scheduler.shutdown(wait=False)
        if client.report_queue_task is not None:
            client.report_queue_task.cancel()
        if client.client_session is not None:
            await client.client_session.close()

    async def report_now(self, timeout_s: float = 5.0) -> None:
        """Send every requested report at once (a report on change, after a step)."""
        if self.client is None:
            raise ConnectionError("the VEN is not started")
        for request in list(self.client.report_requests):
            await asyncio.wait_for(self.client.update_report(request["report_request_id"]), timeout_s)

    # ---- events ----
    def instruction_at(self, t: float) -> float | None:
        """The value of the event in force at ``t`` (the latest-starting one), or None: own control.

        Event times travel as microseconds, so a boundary within one microsecond of ``t`` counts as
        passed: an event issued at ``t`` is in force at ``t`` and over at ``t + duration``."""
        live = [i for i in self._instructions.values() if i.start - TIME_EPS_S <= t < i.end - TIME_EPS_S]
        return max(live, key=lambda i: i.start).value if live else None

    def event_boundaries(self, t0: float, t1: float) -> list[float]:
        """Times strictly inside (t0, t1) where one of this VEN's events starts or ends (to split a step there:
        ``step`` applies the event in force at its start to the whole interval)."""
        return sorted({b for i in self._instructions.values() for b in (i.start, i.end) if t0 + 1e-3 < b < t1 - 1e-3})

    def _on_event(self, event: dict) -> str:
        """openleadr on_event / on_update_event: keep an opted-in event, drop a cancelled one."""
        descriptor = event["event_descriptor"]
        event_id = descriptor["event_id"]
        if descriptor["event_status"] in (enums.EVENT_STATUS.CANCELLED, enums.EVENT_STATUS.COMPLETED):
            self._instructions.pop(event_id, None)
            return enums.OPT.OPT_IN
        try:
            instruction = self._decode(event)
        except ValueError as err:
            logger.warning("VEN %s opts out of event %s: %s", self.credentials.ven_id, event_id, err)
            self._instructions.pop(event_id, None)
            return enums.OPT.OPT_OUT
        if event_id not in self.events_seen:
            self.events_seen.append(event_id)
        self._instructions[event_id] = instruction
        return enums.OPT.OPT_IN

    def _decode(self, event: dict) -> _Instruction:
        """The one-interval signal this device understands, in device units; ValueError otherwise."""
        resources = event.get("targets_by_type", {}).get("resource_id", [self.device_id])
        if self.device_id not in resources:
            raise ValueError(f"event targets {resources}, not {self.device_id}")
        signals = event["event_signals"]
        if len(signals) != 1:
            raise ValueError(f"expected one signal, got {len(signals)}")
        signal = signals[0]
        if (signal["signal_name"], signal["signal_type"]) != self.signal:
            raise ValueError(f"signal {signal['signal_name']}/{signal['signal_type']} is not {self.signal}")
        item = signal.get("measurement") or {}
        if item.get("name") != self.item_name:
            raise ValueError(f"signal unit {item.get('name')} is not {self.item_name}")
        if len(signal["intervals"]) != 1:
            raise ValueError(f"expected one interval, got {len(signal['intervals'])}")
        interval = signal["intervals"][0]
        value = self._device_value(scaled_value(interval["signal_payload"], item.get("scale")), item)
        if not math.isfinite(value):
            raise ValueError(f"payload {interval['signal_payload']} is not finite")
        start = interval["dtstart"].timestamp()
        end = start + interval["duration"].total_seconds()
        self._check_value(value)
        return _Instruction(value, start, end)

    def _device_value(self, base_value: float, item: dict) -> float:
        return base_value

    def _check_value(self, value: float) -> None:
        """Refuse (opt out of) a value the device will not apply."""

    # ---- telemetry ----
    def _report_fields(self) -> dict[str, objects.Measurement]:
        return {"power_kw": power_item()}

    def _state(self) -> dict[str, float]:
        return {"power_kw": self.power_kw}

    def _sample(self, key: str) -> list[tuple[datetime, float]]:
        """openleadr report callback: the last measurement, stamped with the VEN's clock (kW and kWh are
        W and Wh with siScaleCode "k", so the numbers go out as they are)."""
        return [(datetime.fromtimestamp(self.measured_at, tz=timezone.utc), float(self._state()[key]))]

    def step(self, dt_s: float) -> None:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class SiteParams:
    """One commercial site's flexible load (the env's FlexLoadParams for a single site)."""

    baseline_kw: float  # the env's scale_kw; baseline = baseline_kw * profile
    max_curtail_fraction: float
    max_rebound_kw: float
    max_backlog_kwh: float

    def validate(self) -> None:
        _check_positive("baseline_kw", self.baseline_kw)
        if not 0.0 <= self.max_curtail_fraction <= 1.0:
            raise ValueError(f"max_curtail_fraction = {self.max_curtail_fraction} is outside the allowed range [0, 1]")
        for name in ("max_rebound_kw", "max_backlog_kwh"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} = {getattr(self, name)} is outside the allowed range [0, inf)")


class FlexLoadVen(SimulatedVen):
    """A commercial site's flexible load as an OpenADR VEN (LOAD_DISPATCH setpoints in kW)."""

    signal = SITE_SIGNAL
    item_name = "powerReal"

    def __init__(self, device_id: str, vtn_url: str, credentials: VenCredentials, params: SiteParams,
                 t0: float | None = None, poll_interval_s: float | None = None) -> None:
        params.validate()
        super().__init__(device_id, vtn_url, credentials, t0, poll_interval_s)
        self.params = params
        self.profile = 1.0  # the env's load profile value for the site (baseline multiplier)
        self._device: FlexLoad | None = None
        self.backlog_kwh = 0.0
        self.power_kw = params.baseline_kw * self.profile  # before the first step: the baseline

    def _device_for(self, dt_h: float) -> FlexLoad:
        """The env's FlexLoad for one site at this step length, carrying the backlog across lengths."""
        if self._device is None or self._device.dt_h != dt_h:
            p = self.params
            device = FlexLoad(FlexLoadParams(_one(p.baseline_kw), _one(p.max_curtail_fraction),
                                             _one(p.max_rebound_kw), _one(p.max_backlog_kwh)), dt_h)
            device.backlog_kwh[:] = self.backlog_kwh
            self._device = device
        return self._device

    def step(self, dt_s: float) -> None:
        """Advance dt_s seconds: the event's setpoint (or own control), clipped and booked as in FlexLoad."""
        _check_positive("dt_s", dt_s)
        device = self._device_for(dt_s / 3600.0)
        device.update(np.array([self.profile]))
        device.prepare()
        setpoint = self.instruction_at(self.now)
        request = device.p_default if setpoint is None else np.array([setpoint])
        self.power_kw = float(device.step(request)[0])  # FlexLoad.step: clip, backlog += (baseline - p) * dt_h
        self.backlog_kwh = float(device.backlog_kwh[0])
        self.now += dt_s
        self.measured_at = self.now

    def _device_value(self, base_value: float, item: dict) -> float:
        return base_value / 1000.0  # W -> kW

    def _report_fields(self) -> dict[str, objects.Measurement]:
        return {"power_kw": power_item(),
                "backlog_kwh": objects.Measurement(name="energyReal", description="RealEnergy", unit="Wh", scale="k")}

    def _state(self) -> dict[str, float]:
        return {"power_kw": self.power_kw, "backlog_kwh": self.backlog_kwh}


@dataclass(frozen=True)
class HomeParams:
    """One home's heat pump and thermal envelope (the env's ThermostatParams for a single home)."""

    resistance_c_per_kw: float
    capacitance_kwh_per_c: float
    heat_pump_kw: float
    comfort_low_c: float
    comfort_high_c: float
    occupant_setpoint_c: float
    initial_temp_c: float
    max_abs_offset_c: float = 4.0  # the thermostat opts out of larger offsets
    solar_aperture_m2: float = 0.0
    internal_gain_kw: float = 0.0
    balance_temp_c: float = 15.0

    def validate(self) -> None:
        for name in ("resistance_c_per_kw", "capacitance_kwh_per_c", "heat_pump_kw"):
            _check_positive(name, getattr(self, name))
        if not self.comfort_low_c <= self.occupant_setpoint_c <= self.comfort_high_c:
            raise ValueError(f"occupant_setpoint_c = {self.occupant_setpoint_c} is outside the allowed range "
                             f"[{self.comfort_low_c}, {self.comfort_high_c}]")
        if not 0.0 <= self.max_abs_offset_c <= 10.0:
            raise ValueError(f"max_abs_offset_c = {self.max_abs_offset_c} is outside the allowed range [0, 10]")


class ThermostatVen(SimulatedVen):
    """A smart thermostat with a heat pump as an OpenADR VEN (setpoint offsets in tenths of a degC)."""

    signal = THERMOSTAT_SIGNAL
    item_name = "temperature"

    def __init__(self, device_id: str, vtn_url: str, credentials: VenCredentials, params: HomeParams,
                 t0: float | None = None, poll_interval_s: float | None = None) -> None:
        params.validate()
        super().__init__(device_id, vtn_url, credentials, t0, poll_interval_s)
        self.params = params
        self.outdoor_c = 10.0
        self.ghi_w_m2 = 0.0
        self.occupant_override = False  # the occupant opted this home out of events
        self.temp_c = params.initial_temp_c
        self.setpoint_c = params.occupant_setpoint_c
        self._device: Thermostat | None = None

    def _device_for(self, dt_h: float) -> Thermostat:
        """The env's Thermostat for one home at this step length, carrying the indoor temperature."""
        if self._device is None or self._device.dt_h != dt_h:
            p = self.params
            self._device = Thermostat(ThermostatParams(
                _one(p.resistance_c_per_kw), _one(p.capacitance_kwh_per_c), _one(p.heat_pump_kw),
                _one(p.comfort_low_c), _one(p.comfort_high_c), _one(p.solar_aperture_m2), _one(p.internal_gain_kw),
                _one(p.balance_temp_c)), dt_h)
        self._device.temp_c = np.array([self.temp_c])
        return self._device

    def step(self, dt_s: float) -> None:
        """Advance dt_s seconds: setpoint = occupant's + the event's offset, own control tracks it (RC model)."""
        _check_positive("dt_s", dt_s)
        device = self._device_for(dt_s / 3600.0)
        offset = self.instruction_at(self.now)
        self.setpoint_c = self.params.occupant_setpoint_c + (offset or 0.0)
        device.setpoint_c = np.array([self.setpoint_c])
        device.update(self.outdoor_c, self.ghi_w_m2)  # free-running temperature, mode, gain (Thermostat.update)
        device.prepare()  # own control: the power that reaches the setpoint, within [0, heat_pump_kw]
        self.power_kw = float(device.step(device.p_default)[0])  # T' = free + gain * P
        self.temp_c = float(device.temp_c[0])
        self.now += dt_s
        self.measured_at = self.now

    def _device_value(self, base_value: float, item: dict) -> float:
        if item.get("unit") == "fahrenheit":
            return base_value * 5.0 / 9.0  # an offset: no 32 degF shift
        return base_value

    def _check_value(self, value: float) -> None:
        if self.occupant_override:
            raise ValueError("the occupant has overridden demand response")
        if abs(value) > self.params.max_abs_offset_c + OFFSET_STEP_C / 2:
            raise ValueError(f"offset {value} degC is outside the allowed range "
                             f"[-{self.params.max_abs_offset_c}, {self.params.max_abs_offset_c}]")

    def _report_fields(self) -> dict[str, objects.Measurement]:
        return {"power_kw": power_item(), "temp_c": _temperature_item(), "setpoint_c": _temperature_item()}

    def _state(self) -> dict[str, float]:
        return {"power_kw": self.power_kw, "temp_c": self.temp_c, "setpoint_c": self.setpoint_c}
