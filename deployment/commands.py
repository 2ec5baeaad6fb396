"""Device commands the dispatch loop sends: the contract between the loop and the protocol encoders.

Every command is *absolute* (a setpoint, never "a bit more"), *keyed* (a ``command_id``: a device that
remembers ids applies a repeat once; applying a repeat again changes nothing, since the command is absolute
and carries its own expiry), *validated before it is sent* (``validate``) and
*expires* (``valid_until``): a device that hears nothing newer reverts to its own control then, so a silent
VPP can never leave a device pinned. Power signs follow the fleet's convention: positive = power drawn from
the home's grid connection (charging, heating), negative = power delivered into it (discharging, V2G).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass


class CommandError(ValueError):
    """A command that must not be sent; the message names the field and the allowed range."""


class CtaEvent(enum.Enum):
    """CTA-2045-A basic DR messages a water heater understands (the loop's vocabulary for them)."""

    SHED = "shed"
    END_SHED = "end_shed"  # back to normal operation (the device's own control)
    LOAD_UP = "load_up"
    CRITICAL_PEAK = "critical_peak"
    GRID_EMERGENCY = "grid_emergency"


@dataclass(frozen=True)
class Envelope:
    """What every command carries, whatever the protocol."""

    command_id: str  # unique per (device, decision): e.g. f"{device_id}:{cycle}"; a repeat is applied once
    device_id: str
    issued_at: float  # unix seconds
    valid_until: float  # unix seconds; the device reverts to its own control after this

    def validate(self) -> None:
        if not self.command_id or not self.device_id:
            raise CommandError("command_id and device_id must be non-empty")
        for name in ("issued_at", "valid_until"):
            if not math.isfinite(getattr(self, name)):
                raise CommandError(f"{name} must be finite, got {getattr(self, name)}")
        if not self.valid_until > self.issued_at:
            raise CommandError(f"valid_until ({self.valid_until}) must be after issued_at ({self.issued_at})")


def check_range(name: str, value: float, lo: float, hi: float) -> None:
    """Refuse a non-finite or out-of-range value, naming the field and the allowed range."""
    if not math.isfinite(value) or not lo <= value <= hi:
        raise CommandError(f"{name} = {value} is outside the allowed range [{lo}, {hi}]")


@dataclass(frozen=True)
class PowerCommand:
    """An absolute power setpoint for a charger, battery or PV inverter, or a commercial site's load."""

    envelope: Envelope
    setpoint_kw: float  # + draws from the grid connection, - delivers into it
    min_kw: float  # the device's allowed range at this moment (from the shield / the device's own limits)
    max_kw: float

    def validate(self) -> None:
        self.envelope.validate()
        check_range("min_kw <= max_kw", self.min_kw, -math.inf, self.max_kw)
        check_range("setpoint_kw", self.setpoint_kw, self.min_kw, self.max_kw)


@dataclass(frozen=True)
class WaterHeaterCommand:
    """A CTA-2045 basic DR event for a water heater, for ``duration_s`` seconds (0 for END_SHED)."""

    envelope: Envelope
    event: CtaEvent
    duration_s: int

    def validate(self) -> None:
        self.envelope.validate()
        hi = 0 if self.event is CtaEvent.END_SHED else 65535
        check_range("duration_s", self.duration_s, 0, hi)


@dataclass(frozen=True)
class ThermostatCommand:
    """A heating/cooling setpoint offset from the occupant's own setpoint, until ``valid_until``."""

    envelope: Envelope
    offset_c: float  # + warmer, - cooler; bounded by the home's comfort band
    max_abs_offset_c: float

    def validate(self) -> None:
        self.envelope.validate()
        check_range("max_abs_offset_c", self.max_abs_offset_c, 0.0, 10.0)
        check_range("offset_c", self.offset_c, -self.max_abs_offset_c, self.max_abs_offset_c)


Command = PowerCommand | WaterHeaterCommand | ThermostatCommand


@dataclass(frozen=True)
class CommandAck:
    """A device's answer to one command: applied (or already applied: a repeated id), or refused and why."""

    command_id: str
    accepted: bool
    reason: str = ""


@dataclass(frozen=True)
class Telemetry:
    """One device's reading as its protocol reports it (the dispatch loop checks plausibility and freshness).

    ``power_kw`` follows the command sign convention. ``state`` holds what the device class reports beyond
    power, in SI-like units named by key: ``soc_kwh`` (battery, EV), ``connected`` (EV, 0/1), ``temp_c``
    (water heater tank, indoor air), ``setpoint_c`` (thermostat)."""

    device_id: str
    measured_at: float  # unix seconds, the device's own time stamp
    power_kw: float
    state: dict[str, float]


class DeviceLink:
    """The loop's handle on one device, whatever the protocol: send an absolute command, read telemetry.

    Implementations are asyncio-based (the protocol libraries are) and raise ``ConnectionError`` or
    ``TimeoutError`` for a device that cannot be reached, never hang past ``timeout_s``."""

    device_id: str

    async def send(self, command: Command, timeout_s: float) -> CommandAck:  # pragma: no cover - interface
        raise NotImplementedError

    async def read(self, timeout_s: float) -> Telemetry:  # pragma: no cover - interface
        raise NotImplementedError

    async def close(self) -> None:  # pragma: no cover - interface
        return None
