"""SunSpec Modbus TCP: a ``DeviceLink`` for battery and PV inverters, through pysunspec2's Modbus TCP client.

pysunspec2 (``sunspec2.modbus.client.SunSpecModbusClientDeviceTCP``) is synchronous, so every device access
runs in a worker thread under ``asyncio.wait_for`` (and the client's own socket timeout), one at a time.

Encoding of a ``PowerCommand`` (absolute, validated before anything is written):

* battery with model 704 (DER AC controls): ``WSet`` in watts (``WSetMod`` = 1), raw = W / 10**``WSet_SF``,
  ``WSetEna`` = 1, reversion timer ``WSetRvrtTms`` = floor(valid_until - now) with ``WSetEnaRvrt`` = 0, so when
  the timer runs out the function disables and the device goes back to its own control. The timer is written
  first and the enable last, so the device never runs the new setpoint under an old timer.
* legacy battery with model 124 (basic storage controls) and no 704: the setpoint as a percent of ``WChaMax``
  (raw / 10**``InOutWRte_SF``), pinned by ``InWRte`` = pct and ``OutWRte`` = -pct with both ``StorCtl_Mod``
  limits on (a negative limit forces the other direction, as storage inverters read model 124), reverting after
  ``InOutWRte_RvrtTms`` (a uint16: at most 65535 s, so a longer command reverts earlier, never later).
* PV: curtailment as ``WMaxLimPct`` = |setpoint| / ``WMax`` * 100 (raw / 10**``WMaxLimPct_SF``), enabled, with
  its own reversion timer; at the timer the cap lifts and the array delivers all it has.

Signs: SunSpec's active power (``W`` in 701/103, ``WSet`` in 704) is + for generation (power into the grid) and
- for absorption ("may be negative for charging", model 704). The fleet's convention is + = drawn from the grid,
so SunSpec W = -1000 * setpoint_kw, and telemetry power_kw = -W / 1000.

Idempotency: the link remembers the last command id it applied and answers a repeat without writing.
Security: the link talks only to host:port pairs on its allow list; anything else is refused with
``AddressNotAllowed`` before any socket is opened (names are compared as written, never resolved, so a DNS
answer cannot widen the list).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

from sunspec2.modbus.client import SunSpecModbusClientDeviceTCP, SunSpecModbusClientError
from sunspec2.modbus.modbus import ModbusClientError, ModbusClientException

from ..commands import Command, CommandAck, CommandError, DeviceLink, PowerCommand, Telemetry

INT16 = (-0x8000 + 1, 0x7FFF)  # 0x8000 is "not implemented"
INT32 = (-0x80000000 + 1, 0x7FFFFFFF)
UINT16 = (0, 0xFFFE)  # 0xFFFF is "not implemented"
UINT32_TIMER = (1, 0xFFFFFFFE)


class AddressNotAllowed(PermissionError):
    """A device address that is not on the link's allow list."""


class AllowList:
    """The host:port pairs a link may connect to, e.g. ``AllowList(["10.0.4.21:502", ("127.0.0.1", 1502)])``."""

    def __init__(self, entries: Iterable[str | tuple[str, int]]) -> None:
        pairs: set[tuple[str, int]] = set()
        for entry in entries:
            host, port = _split(entry) if isinstance(entry, str) else entry
            if not host or not isinstance(port, int) or not 0 < port < 65536:
                raise ValueError(f"allow-list entry {entry!r} must be host:port with port in [1, 65535]")
            pairs.add((host, port))
        self.pairs = frozenset(pairs)

    def check(self, host: str, port: int) -> None:
        if (host, port) not in self.pairs:
            allowed = ", ".join(f"{h}:{p}" for h, p in sorted(self.pairs)) or "nothing"
            raise AddressNotAllowed(f"{host}:{port} is not on the allow list (allowed: {allowed}); refusing to connect")


def _split(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"allow-list entry {text!r} must be host:port with port in [1, 65535]")
    return host, int(port)


def to_raw(field: str, value: float, sf: int, bounds: tuple[int, int]) -> int:
    """``value`` as the register integer for scale factor ``sf`` (value = raw * 10**sf), range-checked."""
    if not math.isfinite(value):
        raise CommandError(f"{field} = {value} must be finite")
    raw = round(value / 10.0**sf)
    if not bounds[0] <= raw <= bounds[1]:
        raise CommandError(f"{field} = {value} scales to raw {raw} (scale factor {sf}), outside the register's "
                           f"range [{bounds[0]}, {bounds[1]}]")
    return raw


class SunSpecLink(DeviceLink):
    """One SunSpec inverter: ``kind`` = "battery" (setpoint in [-discharge, +charge] rating) or "pv" (setpoint
    in [-WMax, 0]: how much it may deliver at most). ``capacity_kwh`` converts a legacy device's percent SoC to
    kWh (a 700-series device publishes its own energy rating in model 713)."""

    def __init__(self, device_id: str, host: str, port: int, *, allow: AllowList | Iterable[str | tuple[str, int]],
                 kind: Literal["battery", "pv"] = "battery", unit_id: int = 1,
                 clock: Callable[[], float] = time.time, capacity_kwh: float | None = None) -> None:
        self._allow = allow if isinstance(allow, AllowList) else AllowList(allow)
        self._allow.check(host, port)  # before anything else: no socket for an address off the list
        if not device_id:
            raise ValueError("device_id must be non-empty")
        if kind not in ("battery", "pv"):
            raise ValueError(f"kind = {kind!r} must be 'battery' or 'pv'")
        if not 1 <= unit_id <= 247:
            raise ValueError(f"unit_id = {unit_id} is outside [1, 247]")
        if capacity_kwh is not None and not (math.isfinite(capacity_kwh) and capacity_kwh > 0):
            raise ValueError(f"capacity_kwh = {capacity_kwh} must be a positive number of kWh")
        self.device_id, self.host, self.port = device_id, host, port
        self.kind, self.unit_id, self.capacity_kwh = kind, unit_id, capacity_kwh
        self._clock = clock
        self._dev: SunSpecModbusClientDeviceTCP | None = None
        self._stale = False  # a call timed out mid-exchange: reconnect before the next one
        self._io = threading.Lock()  # one blocking exchange at a time, even after a timed-out call
        self._last_command_id: str | None = None

    # ----- blocking side (worker thread) ----------------------------------------------------------
    def _device(self, timeout_s: float) -> SunSpecModbusClientDeviceTCP:
        if self._dev is not None and not self._stale:
            self._dev.client.socket.settimeout(timeout_s)
            return self._dev
        if self._dev is not None:
            self._dev.disconnect()
        self._dev, self._stale = None, False
        self._allow.check(self.host, self.port)
        dev = SunSpecModbusClientDeviceTCP(slave_id=self.unit_id, ipaddr=self.host, ipport=self.port, timeout=timeout_s)
        try:
            dev.connect()
            dev.scan(connect=False)
        except BaseException:
            dev.disconnect()  # never leave a half-open socket behind a failed discovery
            raise
        self._dev = dev
        return dev

    def _locked(self, fn: Callable[[SunSpecModbusClientDeviceTCP], Any], timeout_s: float) -> Any:
        with self._io:
            try:
                return fn(self._device(timeout_s))
            except (ModbusClientError, SunSpecModbusClientError, OSError):
                self._stale = True
                raise

    async def _call(self, fn: Callable[[SunSpecModbusClientDeviceTCP], Any], timeout_s: float) -> Any:
        if not math.isfinite(timeout_s) or timeout_s <= 0:
            raise ValueError(f"timeout_s = {timeout_s} must be a positive number of seconds")
        where = f"SunSpec device {self.device_id} at {self.host}:{self.port}"
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._locked, fn, timeout_s), timeout_s)
        except TimeoutError:
            self._stale = True
            raise TimeoutError(f"{where} did not answer within {timeout_s} s") from None
        except (ModbusClientError, SunSpecModbusClientError, OSError) as err:
            raise ConnectionError(f"{where}: {err}") from err

    # ----- discovery and telemetry ----------------------------------------------------------------
    async def discover(self, timeout_s: float) -> list[int]:
        """The SunSpec model ids the device exposes, in map order."""
        return await self._call(lambda dev: [mid for mid in dev.models if isinstance(mid, int)], timeout_s)

    async def read(self, timeout_s: float) -> Telemetry:
        return await self._call(self._read_blocking, timeout_s)

    def _read_blocking(self, dev: SunSpecModbusClientDeviceTCP) -> Telemetry:
        meas = _model(dev, 701) or _model(dev, 103)
        if meas is None:
            raise ConnectionError(f"device {self.device_id} exposes no measurement model (701 or 103)")
        meas.read()
        watts = meas.W.cvalue
        if watts is None:
            raise ConnectionError(f"device {self.device_id} reports no active power (W not implemented)")
        state: dict[str, float] = {}
        if (storage := _model(dev, 713)) is not None:
            storage.read()
            soc_pct, rating_wh = storage.SoC.cvalue, storage.WHRtg.cvalue
            if soc_pct is not None:
                state["soc_frac"] = soc_pct / 100.0
                if rating_wh is not None:
                    state["soc_kwh"] = soc_pct / 100.0 * rating_wh / 1000.0
        elif (legacy := _model(dev, 124)) is not None:
            legacy.read()
            if (soc_pct := legacy.ChaState.cvalue) is not None:
                state["soc_frac"] = soc_pct / 100.0
                if self.capacity_kwh is not None:
                    state["soc_kwh"] = soc_pct / 100.0 * self.capacity_kwh
        return Telemetry(self.device_id, self._clock(), -watts / 1000.0, state)

    # ----- commands -------------------------------------------------------------------------------
    async def send(self, command: Command, timeout_s: float) -> CommandAck:
        if not isinstance(command, PowerCommand):
            raise CommandError(f"a SunSpec link carries PowerCommand only, got {type(command).__name__}")
        cid = command.envelope.command_id
        if cid and cid == self._last_command_id:
            return CommandAck(cid, True, "already applied (repeated command_id)")
        revert_s = self._check(command)
        ack = await self._call(lambda dev: self._write_blocking(dev, command, revert_s), timeout_s)
        if ack.accepted:
            self._last_command_id = cid
        return ack

    def _check(self, command: PowerCommand) -> int:
        """Validate what needs no device: the command itself, its device and its expiry; returns the
        reversion time in whole seconds (never past valid_until)."""
        command.validate()
        env = command.envelope
        if env.device_id != self.device_id:
            raise CommandError(f"envelope.device_id = {env.device_id!r} is not this link's device {self.device_id!r}")
        now = self._clock()
        revert_s = math.floor(env.valid_until - now)
        if revert_s < 1:
            raise CommandError(f"valid_until = {env.valid_until} leaves {env.valid_until - now:.3f} s (now {now}); "
                               f"a command must be valid for at least 1 s")
        return revert_s

    def _write_blocking(self, dev: SunSpecModbusClientDeviceTCP, command: PowerCommand, revert_s: int) -> CommandAck:
        cid = command.envelope.command_id
        try:
            if self.kind == "pv":
                return self._write_curtailment(dev, command, revert_s)
            if _model(dev, 704) is not None:
                return self._write_wset(dev, command, revert_s)
            if _model(dev, 124) is not None:
                return self._write_storage_rates(dev, command, revert_s)
            raise CommandError(f"device {self.device_id} exposes neither model 704 nor model 124: nothing to command")
        except ModbusClientException as err:  # the device answered the write with a Modbus exception
            return CommandAck(cid, False, f"device refused the write: {err}")

    def _write_wset(self, dev: SunSpecModbusClientDeviceTCP, command: PowerCommand, revert_s: int) -> CommandAck:
        lo_kw, hi_kw = self._battery_range(dev)
        _check_setpoint(command.setpoint_kw, lo_kw, hi_kw, "the device's 702 ratings")
        ctl = _model(dev, 704)
        ctl.read()
        raw = to_raw("WSet", -1000.0 * command.setpoint_kw, _sf(ctl, "WSet_SF"), INT32)
        tms = min(revert_s, UINT32_TIMER[1])
        _write(ctl, WSetEnaRvrt=0, WSetRvrtTms=tms)
        _write(ctl, WSetEna=1, WSetMod=1, WSet=raw)
        return _verify(ctl, command.envelope.command_id, WSetEna=1, WSetMod=1, WSet=raw, WSetRvrtTms=tms)

    def _write_curtailment(self, dev: SunSpecModbusClientDeviceTCP, command: PowerCommand, revert_s: int) -> CommandAck:
        ctl, cap = _model(dev, 704), _model(dev, 702)
        if ctl is None or cap is None:
            raise CommandError(f"device {self.device_id} needs models 702 and 704 for PV curtailment")
        cap.read()
        w_max = cap.WMax.cvalue or cap.WMaxRtg.cvalue
        if not w_max:
            raise CommandError(f"device {self.device_id} reports no WMax/WMaxRtg to curtail against")
        _check_setpoint(command.setpoint_kw, -w_max / 1000.0, 0.0, "PV: 0 down to -WMax")
        ctl.read()
        raw = to_raw("WMaxLimPct", -100_000.0 * command.setpoint_kw / w_max, _sf(ctl, "WMaxLimPct_SF"), UINT16)
        tms = min(revert_s, UINT32_TIMER[1])
        _write(ctl, WMaxLimPctEnaRvrt=0, WMaxLimPctRvrtTms=tms)
        _write(ctl, WMaxLimPctEna=1, WMaxLimPct=raw)
        return _verify(ctl, command.envelope.command_id, WMaxLimPctEna=1, WMaxLimPct=raw, WMaxLimPctRvrtTms=tms)

    def _write_storage_rates(self, dev: SunSpecModbusClientDeviceTCP, command: PowerCommand,
                             revert_s: int) -> CommandAck:
        ctl = _model(dev, 124)
        ctl.read()
        w_cha_max = ctl.WChaMax.cvalue
        if not w_cha_max:
            raise CommandError(f"device {self.device_id} reports no WChaMax (model 124)")
        _check_setpoint(command.setpoint_kw, -w_cha_max / 1000.0, w_cha_max / 1000.0, "model 124 WChaMax")
        pct = 100_000.0 * command.setpoint_kw / w_cha_max  # + charge, - discharge
        sf = _sf(ctl, "InOutWRte_SF")
        in_raw, out_raw = to_raw("InWRte", pct, sf, INT16), to_raw("OutWRte", -pct, sf, INT16)
        tms = min(revert_s, UINT16[1])
        _write(ctl, OutWRte=out_raw, InWRte=in_raw, InOutWRte_WinTms=0, InOutWRte_RvrtTms=tms)
        _write(ctl, StorCtl_Mod=0b11)
        return _verify(ctl, command.envelope.command_id, StorCtl_Mod=0b11, InWRte=in_raw, OutWRte=out_raw,
                       InOutWRte_RvrtTms=tms)

    def _battery_range(self, dev: SunSpecModbusClientDeviceTCP) -> tuple[float, float]:
        """(-discharge, +charge) kW from model 702's ratings."""
        cap = _model(dev, 702)
        if cap is None:
            raise CommandError(f"device {self.device_id} exposes no model 702 ratings to check a setpoint against")
        cap.read()
        w_max = cap.WMaxRtg.cvalue
        charge = cap.WChaRteMaxRtg.cvalue or w_max
        discharge = cap.WDisChaRteMaxRtg.cvalue or w_max
        if not charge or not discharge:
            raise CommandError(f"device {self.device_id} reports no power rating in model 702")
        return -discharge / 1000.0, charge / 1000.0

    async def close(self) -> None:
        def shut() -> None:
            with self._io:
                if self._dev is not None:
                    self._dev.disconnect()
                self._dev = None

        await asyncio.wait_for(asyncio.to_thread(shut), 5.0)


def _model(dev: SunSpecModbusClientDeviceTCP, model_id: int) -> Any:
    found = dev.models.get(model_id)
    return found[0] if found else None


def _sf(model: Any, name: str) -> int:
    value = getattr(model, name).value
    if value is None:
        raise CommandError(f"scale factor {name} is not implemented on the device")
    return int(value)


def _check_setpoint(setpoint_kw: float, lo: float, hi: float, source: str) -> None:
    if not lo <= setpoint_kw <= hi:
        raise CommandError(f"setpoint_kw = {setpoint_kw} is outside the device's range [{lo}, {hi}] ({source})")


def _write(model: Any, **raw: int) -> None:
    """Write raw point values in one pass (pysunspec2 batches contiguous points into one request)."""
    for name, value in raw.items():
        getattr(model, name).value = value
    model.write()


def _verify(model: Any, cid: str, **expected: int) -> CommandAck:
    """Read the controls back: the command counts as applied only if the device holds what was written."""
    model.read()
    wrong = {name: getattr(model, name).value for name, value in expected.items() if getattr(model, name).value != value}
    if wrong:
        return CommandAck(cid, False, f"device reads back {wrong}, not what was written")
    return CommandAck(cid, True)
