"""A CTA-2045 smart grid device (SGD): an electric water heater on a loopback TCP socket (the serial line's
stand-in), backed by the env's water-heater physics (``envs/devices/water_heater.py``).

It answers every well-formed message with a link-layer ACK and then the application answer (application ACK
for DR events and the comm-status message, the operational-state response, commodity read and present
temperature), NAKs a corrupted frame at the link layer and an opcode it does not know at the application layer.
Events act as the env's water heater would under them:

* normal (no event, or END_SHED): the tank's own thermostat holds ``setpoint_c`` (the env's action 0).
* SHED / CRITICAL_PEAK: element off unless the tank would end the step below ``comfort_low_c``; then only
  the power that holds it there (the env's action -1, with the comfort floor the shield keeps).
* GRID_EMERGENCY: as shed, with the floor lowered by ``emergency_margin_c`` (the deepest curtailment).
* LOAD_UP: heat toward ``max_temp_c`` at up to the element's power (the env's action +1).

An event lasts the duration its opcode2 encodes (2 * D**2 s) and then the device reverts to normal. Physics
advances only through ``step(dt_s)``, never with the wall clock.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

import numpy as np

from ...envs.devices.water_heater import WaterHeater, WaterHeaterParams
from ..commands import CtaEvent
from ..protocols.cta2045 import (
    BASIC,
    INTERMEDIATE,
    LL_ACK,
    AppNak,
    CommodityCode,
    CommodityRecord,
    CommStatus,
    FrameError,
    IntermediateOp,
    LinkNak,
    Opcode,
    OperationalState,
    decode_duration,
    decode_frame,
    encode_basic,
    encode_commodity_response,
    encode_present_temperature_response,
    link_nak,
    read_frame,
)

_EVENTS = {Opcode.SHED: CtaEvent.SHED, Opcode.CRITICAL_PEAK: CtaEvent.CRITICAL_PEAK,
           Opcode.GRID_EMERGENCY: CtaEvent.GRID_EMERGENCY, Opcode.LOAD_UP: CtaEvent.LOAD_UP}


@dataclass(frozen=True)
class WaterHeaterSpec:
    """One tank; defaults follow the env's fleet builder (a 200 l tank, 4.5 kW element)."""

    volume_l: float = 200.0
    element_kw: float = 4.5
    comfort_low_c: float = 45.0
    comfort_high_c: float = 65.0
    setpoint_c: float = 52.0
    max_temp_c: float = 75.0
    ua_kw_per_c: float = 0.0025
    inlet_c: float = 12.0
    ambient_c: float = 20.0
    initial_temp_c: float = 52.0
    emergency_margin_c: float = 5.0

    def params(self) -> WaterHeaterParams:
        """The env's parameter arrays for this one tank."""
        a = lambda v: np.array([v], dtype=np.float64)
        return WaterHeaterParams(volume_l=a(self.volume_l), element_kw=a(self.element_kw),
                                 comfort_low_c=a(self.comfort_low_c), comfort_high_c=a(self.comfort_high_c),
                                 setpoint_c=a(self.setpoint_c), max_temp_c=a(self.max_temp_c),
                                 ua_kw_per_c=a(self.ua_kw_per_c), inlet_c=a(self.inlet_c), ambient_c=a(self.ambient_c))


class Cta2045WaterHeaterSim:
    """The SGD: protocol server plus tank physics. ``event`` is the active DR event (None = normal)."""

    def __init__(self, spec: WaterHeaterSpec = WaterHeaterSpec()) -> None:
        self.spec = spec
        self._params = spec.params()
        self.temp_c = spec.initial_temp_c
        self.element_kw = 0.0  # element power over the last step
        self.energy_used_kwh = 0.0
        self.event: CtaEvent | None = None
        self.event_remaining_s: float | None = None  # None with an event = unknown duration (runs until ended)
        self.comm_status: CommStatus | None = None
        self.customer_override = False  # True: the occupant opted out, DR events get an application NAK
        self.mute = False  # True: swallow everything (a device that stopped answering)
        self.events_received: list[tuple[int, int]] = []  # every DR message applied, as (opcode1, opcode2)
        self.link_naks_sent: list[LinkNak] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    # ----- physics -------------------------------------------------------------------------------
    def step(self, dt_s: float, draw_l: float = 0.0) -> None:
        """Advance the tank by ``dt_s`` seconds with ``draw_l`` litres drawn over it; an event that ends
        inside the step splits it (the draw is shared in proportion to time)."""
        if not math.isfinite(dt_s) or dt_s < 0:
            raise ValueError(f"dt_s = {dt_s} must be a finite number of seconds >= 0")
        if not math.isfinite(draw_l) or draw_l < 0:
            raise ValueError(f"draw_l = {draw_l} must be a finite number of litres >= 0")
        left = dt_s
        while left > 1e-9:
            chunk = left if self.event_remaining_s is None else min(left, self.event_remaining_s)
            self._advance(chunk, draw_l * chunk / dt_s)
            left -= chunk
            if self.event_remaining_s is not None:
                self.event_remaining_s -= chunk
                if self.event_remaining_s <= 1e-9:
                    self._end_event()

    def _advance(self, dt_s: float, draw_l: float) -> None:
        """One step of the env's water-heater update (mixing, standby loss, element) under the active event."""
        wh = WaterHeater(self._params, dt_s / 3600.0)
        wh.temp_c = np.array([self.temp_c])
        wh.update(np.array([draw_l]))
        wh.prepare()
        spec = self.spec
        if self.event is None:
            p = wh.p_default
        elif self.event is CtaEvent.LOAD_UP:
            p = wh.p_max
        else:
            floor = spec.comfort_low_c - (spec.emergency_margin_c if self.event is CtaEvent.GRID_EMERGENCY else 0.0)
            need = wh.power_for_temperature(np.array([floor]))
            p = np.where(wh.free_temp_c < floor, np.clip(need, 0.0, wh.p_max), 0.0)
        delivered = wh.step(np.asarray(p, dtype=np.float64))
        self.temp_c = float(wh.temp_c[0])
        self.element_kw = float(delivered[0])
        self.energy_used_kwh += self.element_kw * dt_s / 3600.0

    def _end_event(self) -> None:
        self.event, self.event_remaining_s = None, None

    def operational_state(self) -> OperationalState:
        """What the device reports to an operational-state query (from its mode and its element)."""
        on = self.element_kw > 0.0
        if self.event is None:
            return OperationalState.RUNNING_NORMAL if on else OperationalState.IDLE_NORMAL
        if self.event is CtaEvent.LOAD_UP:
            return OperationalState.RUNNING_HEIGHTENED if on else OperationalState.IDLE_HEIGHTENED
        return OperationalState.RUNNING_CURTAILED if on else OperationalState.IDLE_CURTAILED

    # ----- protocol ------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on ``host:port`` (port 0: any free one); returns the bound address."""
        self._server = await asyncio.start_server(self._serve, host, port)
        sock_host, sock_port = self._server.sockets[0].getsockname()[:2]
        return sock_host, sock_port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                raw = await read_frame(reader)
                if self.mute:
                    continue
                try:
                    frame = decode_frame(raw)
                except FrameError as err:
                    self.link_naks_sent.append(err.nak)
                    writer.write(link_nak(err.nak))
                    await writer.drain()
                    continue
                if frame.is_link_layer:
                    continue  # the UCM acknowledging our answer
                writer.write(LL_ACK)
                writer.write(self._answer(frame))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, FrameError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    def _answer(self, frame) -> bytes:
        """The application answer to one decoded message (after its link-layer ACK)."""
        if frame.msg_type == INTERMEDIATE:
            op = int.from_bytes(frame.payload[:2], "big")
            if op == IntermediateOp.COMMODITY_READ:
                rate_w = round(self.element_kw * 1000.0)
                return encode_commodity_response([CommodityRecord(CommodityCode.ELECTRICITY_CONSUMED, rate_w,
                                                                  round(self.energy_used_kwh * 1000.0))])
            if op == IntermediateOp.GET_PRESENT_TEMPERATURE:
                return encode_present_temperature_response(self.temp_c)
            return encode_basic(Opcode.APP_NAK, AppNak.OPCODE1_NOT_SUPPORTED)
        if frame.msg_type != BASIC or len(frame.payload) != 2:
            return encode_basic(Opcode.APP_NAK, AppNak.LENGTH_INVALID)
        op1, op2 = frame.opcodes
        if op1 == Opcode.OPER_STATE_QUERY:
            return encode_basic(Opcode.OPER_STATE_RESPONSE, self.operational_state())
        if op1 == Opcode.OUTSIDE_COMM_STATUS:
            if op2 not in CommStatus._value2member_map_:
                return encode_basic(Opcode.APP_NAK, AppNak.OPCODE2_INVALID)
            self.comm_status = CommStatus(op2)
            return encode_basic(Opcode.APP_ACK, op1)
        if op1 == Opcode.END_SHED:
            self.events_received.append((op1, op2))
            self._end_event()
            return encode_basic(Opcode.APP_ACK, op1)
        if op1 in _EVENTS:
            if self.customer_override:
                return encode_basic(Opcode.APP_NAK, AppNak.CUSTOMER_OVERRIDE)
            self.events_received.append((op1, op2))
            self.event = _EVENTS[Opcode(op1)]
            seconds = decode_duration(op2)
            self.event_remaining_s = None if seconds is None else float(seconds)
            return encode_basic(Opcode.APP_ACK, op1)
        return encode_basic(Opcode.APP_NAK, AppNak.OPCODE1_NOT_SUPPORTED)
