"""A SunSpec Modbus TCP inverter (home battery or PV) on loopback, backed by the env's device physics.

Register map: "SunS" at 40000, then the models one after another, each laid out by pysunspec2's own model
definitions (``sunspec2.device.Model`` gives every point's offset, size and type; no offset here is typed by
hand), then the end marker 0xFFFF 0x0000. Layouts:

* battery: 1 common, 704 DER AC controls, 701 DER AC measurement, 702 DER capacity, 713 DER storage capacity
* battery, ``legacy=True``: 1 common, 103 three-phase inverter, 124 basic storage controls
* pv: 1 common, 704, 701, 702

Controls. Model 704: ``WSet`` (watts, ``WSetMod`` = 1, or percent of ``WMax`` via ``WSetPct``, mode 0) while
``WSetEna`` = 1, and ``WMaxLimPct`` (percent of ``WMax``) caps generation while ``WMaxLimPctEna`` = 1. Each has
a reversion timer: writing the function's enable, setpoint or ``*RvrtTms`` with the function enabled restarts
``*RvrtRem`` from ``*RvrtTms`` (0 = no timer); when it runs out the function takes its reversion value if its
``*EnaRvrt`` is set, else it disables and the inverter goes back to its own control. Model 124: ``StorCtl_Mod``
bit 0 caps charging at ``InWRte`` % and bit 1 caps discharging at ``OutWRte`` % of ``WChaMax`` (124 defines no
separate discharge maximum); a negative cap forces the other direction, so ``InWRte`` = -x with ``OutWRte`` = x
pins discharge at x %. ``InOutWRte_RvrtTms`` reverts ``StorCtl_Mod`` to 0. Own control: a battery idles (the
env's default action), PV delivers everything available.

Signs: SunSpec's W is + for generation (power into the grid) and - for absorption; the simulator keeps the
fleet's sign internally (+ = drawn from the grid) and publishes -1000 * kW.

Physics advances only through ``step(dt_s)``: the battery through ``envs/devices/battery.py`` (SoC limits,
efficiencies, power limits), PV through ``envs/devices/solar.py`` (available power, curtailment).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from sunspec2 import device as ss_device
from sunspec2 import mb as ss_mb
from sunspec2 import mdef

from ...envs.devices.battery import Battery, BatteryParams
from ...envs.devices.solar import Solar

SUNS_BASE = 40000
SUNS_MARKER = (0x5375, 0x6E53)  # "SunS"
END_MODEL_ID = 0xFFFF
WRITE_CODES = frozenset({5, 6, 15, 16, 22, 23})


class RegisterImage:
    """A SunSpec register map as a flat list of 16-bit registers, laid out from pysunspec2's model definitions."""

    def __init__(self, model_ids: Sequence[int], base: int = SUNS_BASE) -> None:
        self.base = base
        self.regs: list[int] = list(SUNS_MARKER)
        self.models: dict[int, tuple[int, ss_device.Model]] = {}  # model id -> (address of its ID point, model)
        self.writable: set[int] = set()  # register addresses a client may write (points with access RW)
        self._point_at: dict[int, tuple[int, str]] = {}  # first register of a top-level point -> (model, name)
        for mid in model_ids:
            model = ss_device.Model(mid)
            addr = base + len(self.regs)
            self.models[mid] = (addr, model)
            for name, pt in model.points.items():
                self._point_at[addr + pt.offset] = (mid, name)
                if pt.pdef.get(mdef.ACCESS) == mdef.ACCESS_RW:
                    self.writable.update(range(addr + pt.offset, addr + pt.offset + pt.len))
            data = model.get_mb()  # every point unimplemented except ID and L, as pysunspec2 encodes them
            self.regs += [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
        self.regs += [END_MODEL_ID, 0]

    def address(self, model_id: int, name: str) -> int:
        """Modbus address of a top-level point."""
        addr, model = self.models[model_id]
        return addr + model.points[name].offset

    def _point(self, model_id: int, name: str):
        return self.models[model_id][1].points[name]

    def set(self, model_id: int, name: str, value: int | str | None) -> None:
        """Store a raw (unscaled) point value; None stores the type's "unimplemented" pattern."""
        pt = self._point(model_id, name)
        data = (pt.info.to_data(value, pt.len * 2) if value is not None
                else ss_mb.create_unimpl_value(pt.pdef[mdef.TYPE], len=pt.len * 2))
        i = self.address(model_id, name) - self.base
        self.regs[i:i + pt.len] = [int.from_bytes(data[k:k + 2], "big") for k in range(0, len(data), 2)]

    def get(self, model_id: int, name: str, regs: Sequence[int] | None = None) -> int | str | None:
        """The raw point value (None if unimplemented), from ``regs`` (default: this image)."""
        pt = self._point(model_id, name)
        i = self.address(model_id, name) - self.base
        src = self.regs if regs is None else regs
        value = pt.info.data_to(b"".join(r.to_bytes(2, "big") for r in src[i:i + pt.len]))
        return value if pt.info.is_impl(value) else None

    def scaled(self, model_id: int, name: str, regs: Sequence[int] | None = None) -> float | None:
        """A point's value times 10**(its scale factor)."""
        raw = self.get(model_id, name, regs)
        sf_name = self._point(model_id, name).pdef.get(mdef.SF)
        if raw is None:
            return None
        sf = self.get(model_id, sf_name, regs) if sf_name else 0
        return float(raw) * 10.0 ** (sf or 0)

    def points_in(self, first: int, count: int) -> list[tuple[int, str]]:
        """Top-level points with a register in [first, first + count)."""
        out = []
        for addr, key in self._point_at.items():
            mid, name = key
            if addr < first + count and addr + self._point(mid, name).len > first:
                out.append(key)
        return out


@dataclass(frozen=True)
class BatterySpec:
    """One home battery (the env's ``BatteryParams`` for a single home)."""

    capacity_kwh: float = 10.0
    max_charge_kw: float = 5.0
    max_discharge_kw: float = 5.0
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    soc_min: float = 0.0
    soc_max: float = 1.0
    initial_soc: float = 0.5

    def params(self) -> BatteryParams:
        a = lambda v: np.array([v], dtype=np.float64)
        return BatteryParams(capacity_kwh=a(self.capacity_kwh), max_charge_kw=a(self.max_charge_kw),
                             max_discharge_kw=a(self.max_discharge_kw), charge_efficiency=a(self.charge_efficiency),
                             discharge_efficiency=a(self.discharge_efficiency), soc_min=a(self.soc_min),
                             soc_max=a(self.soc_max), reserve_soc=a(self.soc_min), degradation_cost_per_kwh=a(0.0),
                             initial_soc=a(self.initial_soc))


@dataclass(frozen=True)
class ScaleFactors:
    """The scale factors the device publishes (raw * 10**sf = value in the point's units)."""

    wset: int = -1  # 704 WSet_SF (W)
    wset_pct: int = -1  # 704 WSetPct_SF (%)
    wmaxlimpct: int = -1  # 704 WMaxLimPct_SF (%)
    w: int = 0  # 701/702/103 W_SF (W)
    soc_pct: int = -2  # 713 Pct_SF (%)
    wh: int = 1  # 713 WH_SF (Wh)
    wchamax: int = 0  # 124 WChaMax_SF (W)
    inout_wrte: int = -1  # 124 InOutWRte_SF (%)
    cha_state: int = -1  # 124 ChaState_SF (%)


def _bounded(value: int | None, lo: float, hi: float) -> bool:
    return value is not None and lo <= value <= hi


class SunSpecInverterSim:
    """The device: a pymodbus TCP server over a ``RegisterImage`` plus one battery or one PV array.

    ``writes`` records every accepted write request as (address, values); ``connections`` counts TCP
    connections the server accepted (both checked by the tests, independently of any client)."""

    def __init__(self, kind: Literal["battery", "pv"] = "battery", *, legacy: bool = False,
                 battery: BatterySpec = BatterySpec(), pv_kwp: float = 5.0, sf: ScaleFactors = ScaleFactors(),
                 unit_id: int = 1, serial: str = "SIM-0001") -> None:
        if kind not in ("battery", "pv"):
            raise ValueError(f"kind = {kind!r} must be 'battery' or 'pv'")
        if legacy and kind != "battery":
            raise ValueError("legacy = True (model 124 storage controls) applies to kind = 'battery' only")
        self.kind, self.legacy, self.battery_spec, self.sf = kind, legacy, battery, sf
        self.unit_id = unit_id
        if kind == "battery":
            model_ids = (1, 103, 124) if legacy else (1, 704, 701, 702, 713)
            self.rated_w = max(battery.max_charge_kw, battery.max_discharge_kw) * 1000.0
        else:
            model_ids = (1, 704, 701, 702)
            self.rated_w = pv_kwp * 1000.0
        self.image = RegisterImage(model_ids)
        self.energy_kwh = battery.initial_soc * battery.capacity_kwh if kind == "battery" else 0.0
        self._bparams = battery.params()
        self.pv_kwp = pv_kwp
        self.kw_per_kwp = 0.0  # PV resource now (available kW per kWp)
        self.power_kw = 0.0  # AC power now, fleet sign (+ = drawn from the grid)
        self.timers: dict[str, float] = {}  # reversion timers running: function -> seconds left
        self.writes: list[tuple[int, list[int]]] = []
        self.connections = 0
        self.remote_control = True  # False: the installer switched the device to local control; writes get BUSY
        self._server: ModbusTcpServer | None = None
        self.address: tuple[str, int] | None = None  # the bound (host, port) once started
        self._init_points(serial)
        self._refresh()

    # ----- register map ---------------------------------------------------------------------------
    def _init_points(self, serial: str) -> None:
        im, sf, b = self.image, self.sf, self.battery_spec
        im.set(1, "Mn", "vpprl")
        im.set(1, "Md", f"sim-{self.kind}{'-legacy' if self.legacy else ''}")
        im.set(1, "Vr", "1.0")
        im.set(1, "SN", serial)
        im.set(1, "DA", self.unit_id)
        if self.legacy:
            im.set(103, "W_SF", sf.w)
            im.set(103, "St", 4)  # MPPT / operating
            im.set(124, "WChaMax_SF", sf.wchamax)
            im.set(124, "WChaMax", self._raw(b.max_charge_kw * 1000.0, sf.wchamax))
            im.set(124, "InOutWRte_SF", sf.inout_wrte)
            im.set(124, "ChaState_SF", sf.cha_state)
            for name in ("StorCtl_Mod", "InWRte", "OutWRte", "InOutWRte_WinTms", "InOutWRte_RvrtTms",
                         "InOutWRte_RmpTms"):
                im.set(124, name, 0)
            im.set(124, "InWRte", self._raw(100.0, sf.inout_wrte))
            im.set(124, "OutWRte", self._raw(100.0, sf.inout_wrte))
            return
        im.set(701, "ACType", 0)
        im.set(701, "W_SF", sf.w)
        im.set(702, "W_SF", sf.w)
        im.set(702, "WMaxRtg", self._raw(self.rated_w, sf.w))
        im.set(702, "WMax", self._raw(self.rated_w, sf.w))
        if self.kind == "battery":
            im.set(702, "WChaRteMaxRtg", self._raw(b.max_charge_kw * 1000.0, sf.w))
            im.set(702, "WDisChaRteMaxRtg", self._raw(b.max_discharge_kw * 1000.0, sf.w))
            im.set(713, "WH_SF", sf.wh)
            im.set(713, "Pct_SF", sf.soc_pct)
            im.set(713, "WHRtg", self._raw(b.capacity_kwh * 1000.0, sf.wh))
            im.set(713, "SoH", self._raw(100.0, sf.soc_pct))
        im.set(704, "WSet_SF", sf.wset)
        im.set(704, "WSetPct_SF", sf.wset_pct)
        im.set(704, "WMaxLimPct_SF", sf.wmaxlimpct)
        for name in ("WSetEna", "WSetMod", "WSet", "WSetRvrt", "WSetPct", "WSetPctRvrt", "WSetEnaRvrt",
                     "WSetRvrtTms", "WSetRvrtRem", "WMaxLimPctEna", "WMaxLimPctEnaRvrt", "WMaxLimPctRvrtTms",
                     "WMaxLimPctRvrtRem"):
            im.set(704, name, 0)
        im.set(704, "WSetMod", 1)
        im.set(704, "WMaxLimPct", self._raw(100.0, sf.wmaxlimpct))
        im.set(704, "WMaxLimPctRvrt", self._raw(100.0, sf.wmaxlimpct))

    @staticmethod
    def _raw(value: float, sf: int) -> int:
        return round(value / 10.0**sf)

    # ----- what the controls ask for ----------------------------------------------------------------
    def _requested_kw(self) -> float:
        """The AC power the controls ask for now (fleet sign), before the physics' own limits."""
        im = self.image
        if self.legacy:
            mode = im.get(124, "StorCtl_Mod") or 0
            w_cha_max = im.scaled(124, "WChaMax") or 0.0
            lo = -self.battery_spec.max_discharge_kw
            hi = self.battery_spec.max_charge_kw
            if mode & 0b01:
                hi = min(hi, (im.scaled(124, "InWRte") or 0.0) / 100.0 * w_cha_max / 1000.0)
            if mode & 0b10:
                lo = max(lo, -(im.scaled(124, "OutWRte") or 0.0) / 100.0 * w_cha_max / 1000.0)
            return min(max(0.0, lo), hi)  # own control (idle) inside the window
        w_max = im.scaled(702, "WMax") or self.rated_w
        if self.kind == "pv":
            p = -self.available_kw
        elif im.get(704, "WSetEna") == 1:
            if im.get(704, "WSetMod") == 1:
                p = -(im.scaled(704, "WSet") or 0.0) / 1000.0  # SunSpec + = generation
            else:
                p = -(im.scaled(704, "WSetPct") or 0.0) / 100.0 * w_max / 1000.0
        else:
            p = 0.0
        if im.get(704, "WMaxLimPctEna") == 1:  # generation cap
            p = max(p, -(im.scaled(704, "WMaxLimPct") or 0.0) / 100.0 * w_max / 1000.0)
        return p

    @property
    def available_kw(self) -> float:
        return self.pv_kwp * self.kw_per_kwp

    @property
    def soc(self) -> float:
        return self.energy_kwh / self.battery_spec.capacity_kwh

    # ----- physics --------------------------------------------------------------------------------
    def step(self, dt_s: float) -> None:
        """Advance the device by ``dt_s`` seconds; a reversion timer running out inside the step splits it."""
        if not math.isfinite(dt_s) or dt_s < 0:
            raise ValueError(f"dt_s = {dt_s} must be a finite number of seconds >= 0")
        left = dt_s
        while left > 1e-9:
            chunk = min([left, *self.timers.values()])
            self.power_kw = self._advance(chunk)
            left -= chunk
            for name in list(self.timers):
                self.timers[name] -= chunk
                if self.timers[name] <= 1e-9:
                    self._revert(name)
        self._refresh()

    def _advance(self, dt_s: float) -> float:
        """One step of the env's device update at the requested power; returns the power delivered."""
        dt_h = dt_s / 3600.0
        if self.kind == "pv":
            pv = Solar(np.array([self.pv_kwp]), dt_h)
            pv.update(np.array([self.kw_per_kwp]))
            pv.prepare()
            return float(pv.step(np.array([self._requested_kw()]))[0])
        bat = Battery(self._bparams, dt_h)
        bat.energy_kwh = np.array([self.energy_kwh])
        bat.prepare()  # feasible interval over this step: power limits and SoC limits with efficiencies
        delivered = bat.step(np.array([self._requested_kw()]))
        self.energy_kwh = float(bat.energy_kwh[0])
        return float(delivered[0])

    def _present_kw(self) -> float:
        """The power the device would deliver now (its limits over the next second), for telemetry."""
        if self.kind == "pv":
            return max(self._requested_kw(), -self.available_kw)
        bat = Battery(self._bparams, 1.0 / 3600.0)
        bat.energy_kwh = np.array([self.energy_kwh])
        bat.prepare()
        return float(np.clip(self._requested_kw(), bat.p_min, bat.p_max)[0])

    def _revert(self, name: str) -> None:
        """A reversion timer ran out: take the function's reversion value if enabled, else disable it."""
        im = self.image
        del self.timers[name]
        if name == "inout":
            im.set(124, "StorCtl_Mod", 0)
            return
        fn = "WSet" if name == "wset" else "WMaxLimPct"
        if im.get(704, f"{fn}EnaRvrt") == 1:
            im.set(704, fn, im.get(704, f"{fn}Rvrt"))
            if fn == "WSet":
                im.set(704, "WSetPct", im.get(704, "WSetPctRvrt"))
        else:
            im.set(704, f"{fn}Ena", 0)
        im.set(704, f"{fn}RvrtRem", 0)

    def _refresh(self) -> None:
        """Publish measurements and remaining timer seconds into the register image."""
        im, sf = self.image, self.sf
        self.power_kw = self._present_kw()
        w_sunspec = -self.power_kw * 1000.0
        if self.legacy:
            im.set(103, "W", self._raw(w_sunspec, sf.w))
            im.set(124, "ChaState", self._raw(self.soc * 100.0, sf.cha_state))
            im.set(124, "ChaSt", 3 if self.power_kw < 0 else 4 if self.power_kw > 0 else 6)
            return
        im.set(701, "W", self._raw(w_sunspec, sf.w))
        im.set(701, "St", 1)
        if self.kind == "battery":
            im.set(713, "SoC", self._raw(self.soc * 100.0, sf.soc_pct))
            im.set(713, "WHAvail", self._raw(self.energy_kwh * 1000.0, sf.wh))
        for name, fn in (("wset", "WSet"), ("wmaxlimpct", "WMaxLimPct")):
            im.set(704, f"{fn}RvrtRem", math.ceil(self.timers.get(name, 0.0) - 1e-9))

    def set_resource(self, kw_per_kwp: float) -> None:
        """Set the PV resource (available kW per installed kWp), as the env's solar profile does."""
        if not math.isfinite(kw_per_kwp) or kw_per_kwp < 0:
            raise ValueError(f"kw_per_kwp = {kw_per_kwp} must be finite and >= 0")
        self.kw_per_kwp = kw_per_kwp
        self._refresh()

    # ----- writes -----------------------------------------------------------------------------------
    def _check(self, regs: list[int]) -> str | None:
        """Why a proposed register image is not acceptable (None: it is)."""
        im = self.image
        if self.legacy:
            if not _bounded(im.get(124, "StorCtl_Mod", regs), 0, 3):
                return "StorCtl_Mod"
            for name in ("InWRte", "OutWRte"):
                pct = im.scaled(124, name, regs)
                if pct is None or not -100.0 <= pct <= 100.0:
                    return name
            return None
        for name in ("WSetEna", "WSetMod", "WSetEnaRvrt", "WMaxLimPctEna", "WMaxLimPctEnaRvrt"):
            if not _bounded(im.get(704, name, regs), 0, 1):
                return name
        for name in ("WMaxLimPct", "WMaxLimPctRvrt"):
            pct = im.scaled(704, name, regs)
            if pct is None or not 0.0 <= pct <= 100.0:
                return name
        return None

    def _apply_write(self, address: int, values: list[int]) -> ExcCodes | None:
        """Apply one client write to the image (refusing read-only registers and invalid values) and restart
        the reversion timers it touches."""
        if not self.remote_control:
            return ExcCodes.DEVICE_BUSY
        if any(a not in self.image.writable for a in range(address, address + len(values))):
            return ExcCodes.ILLEGAL_ADDRESS
        proposed = list(self.image.regs)
        i = address - self.image.base
        proposed[i:i + len(values)] = values
        if self._check(proposed) is not None:
            return ExcCodes.ILLEGAL_VALUE
        self.image.regs[:] = proposed
        self.writes.append((address, list(values)))
        touched = {name for _, name in self.image.points_in(address, len(values))}
        im = self.image
        if self.legacy:
            if touched & {"StorCtl_Mod", "InWRte", "OutWRte", "InOutWRte_RvrtTms"}:
                self._start_timer("inout", (im.get(124, "StorCtl_Mod") or 0) != 0,
                                  im.get(124, "InOutWRte_RvrtTms") or 0)
        else:
            for name, fn in (("wset", "WSet"), ("wmaxlimpct", "WMaxLimPct")):
                if touched & {f"{fn}Ena", fn, f"{fn}RvrtTms", "WSetMod", "WSetPct"}:
                    self._start_timer(name, im.get(704, f"{fn}Ena") == 1, im.get(704, f"{fn}RvrtTms") or 0)
        self._refresh()
        return None

    def _start_timer(self, name: str, enabled: bool, seconds: int) -> None:
        if enabled and seconds > 0:
            self.timers[name] = float(seconds)
        else:
            self.timers.pop(name, None)

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      current: list[int], set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        """pymodbus hook on every access: writes go through ``_apply_write``; the image is copied into the
        server's registers so every read sees the device as it is now."""
        if set_values is not None and function_code in WRITE_CODES:
            err = self._apply_write(address, [int(v) for v in set_values])
            if err is not None:
                return err
        n = len(self.image.regs)
        current[:n] = self.image.regs
        return None

    # ----- server -----------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Serve on ``host:port`` (port 0: any free one); returns the bound address."""
        dev = SimDevice(id=self.unit_id, simdata=[SimData(address=self.image.base, values=list(self.image.regs),
                                                          datatype=DataType.REGISTERS)], action=self._action)
        self._server = ModbusTcpServer(dev, address=(host, port), trace_connect=self._on_connect)
        await self._server.serve_forever(background=True)
        sock_host, sock_port = self._server.transport.sockets[0].getsockname()[:2]  # type: ignore[attr-defined]
        self.address = (sock_host, sock_port)
        return sock_host, sock_port

    def _on_connect(self, connected: bool) -> None:
        if connected:
            self.connections += 1

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None
