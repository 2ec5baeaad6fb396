"""Device commands the dispatch loop sends: the contract between the loop and the protocol encoders.

Every command is *absolute* (a setpoint, never "a bit more"), *idempotent* (a keyed ``command_id``: a
device that sees the same id twice applies it once), *validated before it is sent* (``validate``) and
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
