"""Shield setpoints (kW per device) -> the commands each device class understands, vectorized over devices.

Power devices (battery, EV charger, PV inverter, commercial flexible load) get the absolute kW setpoint. A
water heater speaks CTA-2045 basic DR, which has no kW, only three behaviours: LOAD_UP (its element at full
power toward its maximum temperature), SHED (element off unless the tank would fall below its comfort floor)
and END_SHED (its own control). The encoding never lets the tank draw more than the shield allowed: LOAD_UP
only where the safe setpoint is the full power, END_SHED where own control draws no more than the setpoint,
SHED otherwise; ``CommandBatch.expected_kw`` is what the device will then draw, for the twin's prediction. A
thermostat takes a setpoint offset: the temperature change the commanded extra power makes in one step
(``(P - P_own) x dT/dP`` of the twin's thermal model), so its own controller draws that power to follow it,
saturated at ``max_offset_c`` (the twin then expects the power of the saturated offset). A heat pump's own
controller sets its power, so its draw is what the twin expects only as far as that model is right. Every command is absolute, keyed ``{device_id}:{cycle}`` and expires ``ttl_s`` after issue.

The numbers of a whole cycle are computed and validated as arrays (``CommandBatch``); a ``Command`` object is
made only for the device it is sent to (``CommandBatch.command``), in the I/O stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..envs.fleet import BATTERY, EV, FLEX, PV, THERMOSTAT, WATER_HEATER
from .commands import Command, CtaEvent, Envelope, PowerCommand, ThermostatCommand, WaterHeaterCommand

POWER_CLASSES = (BATTERY, EV, PV, FLEX)
ROUNDING_KW = 1e-6  # setpoints from the shield sit on its bounds up to floating-point rounding
EVENTS = (CtaEvent.END_SHED, CtaEvent.SHED, CtaEvent.LOAD_UP)  # codes 0, 1, 2 of CommandBatch.event


@dataclass(frozen=True)
class DeviceSlot:
    """One device the dispatcher commands: the home and device class it is in the twin, and its id."""

    home: int
    device_class: int
    device_id: str


@dataclass(frozen=True)
class BuilderConfig:
    ttl_s: float = 90.0  # commands expire this long after issue (longer than the cadence: keep-alive)
    max_offset_c: float = 3.0

    def __post_init__(self) -> None:
        for name, lo, hi in (("ttl_s", 0.2, 65535.0), ("max_offset_c", 0.1, 10.0)):
            value = getattr(self, name)
            if not (np.isfinite(value) and lo <= value <= hi):
                raise ValueError(f"BuilderConfig.{name} = {value} is outside the allowed range [{lo}, {hi}]")


@dataclass
class CommandBatch:
    """One cycle's commands as arrays over the device slots (M,). ``ok`` marks the slots to send to."""

    cycle: int
    issued_at: float
    valid_until: float
    ok: np.ndarray  # bool: sendable (trusted telemetry, finite, within range)
    setpoint_kw: np.ndarray
    min_kw: np.ndarray
    max_kw: np.ndarray
    event: np.ndarray  # int codes into EVENTS (water heaters)
    offset_c: np.ndarray  # thermostats
    max_offset_c: float
    ttl_s: float
    expected_kw: np.ndarray  # what each device will draw under its command (water heaters: per event)

    def command(self, slot: DeviceSlot, m: int) -> Command:
        env = Envelope(f"{slot.device_id}:{self.cycle}", slot.device_id, self.issued_at, self.valid_until)
        j = slot.device_class
        if j in POWER_CLASSES:
            return PowerCommand(env, float(self.setpoint_kw[m]), float(self.min_kw[m]), float(self.max_kw[m]))
        if j == WATER_HEATER:
            event = EVENTS[int(self.event[m])]
            return WaterHeaterCommand(env, event, 0 if event is CtaEvent.END_SHED else int(self.ttl_s))
        return ThermostatCommand(env, float(self.offset_c[m]), self.max_offset_c)


def build_batch(home: np.ndarray, device_class: np.ndarray, cycle: int, now: float, setpoints: np.ndarray,
                own: np.ndarray, p_min: np.ndarray, p_max: np.ndarray, thermo_gain: np.ndarray,
                sendable: np.ndarray, config: BuilderConfig) -> CommandBatch:
    """Commands for the slots ``(home, device_class)`` from (D, N) setpoints, own-control power and physical
    limits; ``sendable`` (M,) the slots whose telemetry was trusted. A setpoint that is not finite or outside
    its device's limits is not sendable (the validation the command objects repeat, done once for all)."""
    sp = setpoints[device_class, home]
    ow = own[device_class, home]
    lo = np.minimum(p_min[device_class, home], p_max[device_class, home]) - ROUNDING_KW
    hi = p_max[device_class, home] + ROUNDING_KW
    full = p_max[device_class, home]
    eps = ROUNDING_KW
    delta = sp - ow
    event = np.where(ow <= sp + eps, 0, 1)  # END_SHED when own control draws no more than the setpoint, else SHED
    event = np.where((sp >= full - eps) & (ow < full - eps), 2, event)  # LOAD_UP only at full safe power
    gain = thermo_gain[home]
    offset = np.clip(delta * gain, -config.max_offset_c, config.max_offset_c)
    thermo_kw = ow + np.divide(offset, gain, out=np.zeros_like(offset), where=np.abs(gain) > 1e-12)
    expected = np.where(device_class == WATER_HEATER, np.choose(event, [ow, sp, full]),
                        np.where(device_class == THERMOSTAT, thermo_kw, sp))
    valid = np.isfinite(sp) & np.isfinite(offset) & (sp >= lo) & (sp <= hi)
    return CommandBatch(cycle, now, now + config.ttl_s, sendable & valid, sp, lo, hi, event, offset,
                        config.max_offset_c, config.ttl_s, expected)
