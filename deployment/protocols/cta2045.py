"""CTA-2045-A basic DR for water heaters: frame encoder/decoder and a ``DeviceLink`` (the UCM side).

No maintained Python package speaks CTA-2045, so the frames are encoded here from the public message set
(ANSI/CTA-2045-A, "Modular Communications Interface for Energy Management"), as read in open implementations:

* EPRI's reference UCM library, github.com/epri-dev/CTA-2045-UCM-CPP-Library: message layout
  (``cea2045/message/CEA2045MessageBasic.h``: type1, type2, 2-byte big-endian payload length, opcode1, opcode2,
  2-byte checksum), opcode and NAK-code values (``cea2045/message/ConvertEnums.h``), the checksum
  (``cea2045/util/Checksum.cpp``) and example frames with known checksums (``test/test/unit/ChecksumUnitTest.cpp``,
  ``test/test/unit/CEA2045MesssageUnitTest.cpp``; the tests check this module against them byte for byte).
* EPRI's CTA-2045 desktop simulator, github.com/epri-dev/CTA-2045-Desktop-Simulator (``Arduino/ucm/ucm.ino``):
  stream framing (0x06/0x15 messages are 2 bytes; 0x08/0x09 messages are 6 + payload-length bytes).
* pycta2045 (github.com/pycta2045/pycta2045, ``agents/cta2045/CTA2045_commands.json``): application NAK reasons
  and operational-state codes.

Framing. Link-layer ACK = ``06 00``; link-layer NAK = ``15 <reason>``. Every other message is
``<type1> <type2> <len hi> <len lo> <payload...> <ck1> <ck2>``: basic DR is type ``08 01`` with a 2-byte payload
(opcode1, opcode2), intermediate is ``08 02``. The checksum is a Fletcher-style sum over every byte before it:
``c1 = 0xAA, c2 = 0; for b: c1 = (c1 + b) % 255; c2 = (c2 + c1) % 255``, then
``ck1 = 255 - (c1 + c2) % 255`` and ``ck2 = 255 - (c1 + ck1) % 255``.

Exchange. The sender of a message gets a link-layer ACK (or NAK) first; the application answer follows as its
own message (basic: application ACK ``03 <opcode1 acked>`` or NAK ``04 <reason>``; queries: their response),
which the receiver again link-layer ACKs.

Event duration. Shed, load up, critical peak and grid emergency carry the event duration in opcode2 as
``D = sqrt(seconds / 2)`` (so ``seconds = 2 * D**2``, at most 2 * 255**2 = 130050 s; 0 means "unknown", which
would leave the device curtailed with no end, so this link never sends it). The link rounds D *down* so the
device always reverts no later than asked (``encode_duration``), and the command's ``valid_until`` caps the
duration too. End shed's opcode2 is the time to the next event, sent as 0 (none known).
"""

from __future__ import annotations

import asyncio
import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..commands import (
    Command,
    CommandAck,
    CommandError,
    CtaEvent,
    DeviceLink,
    Telemetry,
    WaterHeaterCommand,
)

BASIC = (0x08, 0x01)
INTERMEDIATE = (0x08, 0x02)
DATA_LINK = (0x08, 0x03)
LL_ACK_TYPE = 0x06
LL_NAK_TYPE = 0x15
LL_ACK = bytes([LL_ACK_TYPE, 0x00])
MAX_PAYLOAD = 4096  # the largest payload the spec's max-payload codes allow
MAX_DURATION_BYTE = 255


class Opcode(enum.IntEnum):
    """Basic DR opcode1 values (CTA-2045-A; EPRI ConvertEnums.h)."""

    SHED = 0x01
    END_SHED = 0x02
    APP_ACK = 0x03
    APP_NAK = 0x04
    CRITICAL_PEAK = 0x0A
    GRID_EMERGENCY = 0x0B
    OUTSIDE_COMM_STATUS = 0x0E
    CUSTOMER_OVERRIDE = 0x11
    OPER_STATE_QUERY = 0x12
    OPER_STATE_RESPONSE = 0x13
    LOAD_UP = 0x17


class IntermediateOp(enum.IntEnum):
    """Intermediate (``08 02``) opcode pairs used for telemetry, as (opcode1 << 8) | opcode2."""

    COMMODITY_READ = 0x0600
    COMMODITY_RESPONSE = 0x0680
    GET_PRESENT_TEMPERATURE = 0x0304
    PRESENT_TEMPERATURE_RESPONSE = 0x0384


class LinkNak(enum.IntEnum):
    """Link-layer NAK reasons (the byte after 0x15)."""

    NO_REASON = 0x00
    INVALID_BYTE = 0x01
    INVALID_LENGTH = 0x02
    CHECKSUM_ERROR = 0x03
    RESERVED = 0x04
    MESSAGE_TIMEOUT = 0x05
    UNSUPPORTED_MESSAGE_TYPE = 0x06
    REQUEST_NOT_SUPPORTED = 0x07


class AppNak(enum.IntEnum):
    """Application NAK reasons (opcode2 of a basic 0x04 message)."""

    NO_REASON = 0x00
    OPCODE1_NOT_SUPPORTED = 0x01
    OPCODE2_INVALID = 0x02
    BUSY = 0x03
    LENGTH_INVALID = 0x04
    CUSTOMER_OVERRIDE = 0x05


class OperationalState(enum.IntEnum):
    """Operational-state codes an SGD reports in opcode2 of a 0x13 response."""

    IDLE_NORMAL = 0x00
    RUNNING_NORMAL = 0x01
    RUNNING_CURTAILED = 0x02
    RUNNING_HEIGHTENED = 0x03
    IDLE_CURTAILED = 0x04
    SGD_ERROR = 0x05
    IDLE_HEIGHTENED = 0x06


class CommStatus(enum.IntEnum):
    """Outside communication connection status (opcode2 of a 0x0E message)."""

    NO_CONNECTION = 0x00
    FOUND = 0x01
    POOR = 0x02


class CommodityCode(enum.IntEnum):
    """Commodity codes of a commodity-read response record (EPRI ConvertEnums.h)."""

    ELECTRICITY_CONSUMED = 0x00
    ELECTRICITY_PRODUCED = 0x01
    TOTAL_ENERGY_STORAGE = 0x06
    PRESENT_ENERGY_STORAGE = 0x07


EVENT_OPCODES: dict[CtaEvent, Opcode] = {
    CtaEvent.SHED: Opcode.SHED,
    CtaEvent.END_SHED: Opcode.END_SHED,
    CtaEvent.LOAD_UP: Opcode.LOAD_UP,
    CtaEvent.CRITICAL_PEAK: Opcode.CRITICAL_PEAK,
    CtaEvent.GRID_EMERGENCY: Opcode.GRID_EMERGENCY,
}
DURATION_OPCODES = frozenset({Opcode.SHED, Opcode.LOAD_UP, Opcode.CRITICAL_PEAK, Opcode.GRID_EMERGENCY})


class FrameError(ValueError):
    """A frame that must be refused; ``nak`` is the link-layer NAK reason to answer it with."""

    def __init__(self, message: str, nak: LinkNak) -> None:
        super().__init__(message)
        self.nak = nak


# ----- checksum, durations ---------------------------------------------------------------------
def checksum(data: bytes) -> bytes:
    """The two checksum bytes CTA-2045 appends to ``data`` (see the module docstring)."""
    c1, c2 = 0xAA, 0
    for b in data:
        c1 = (c1 + b) % 255
        c2 = (c2 + c1) % 255
    ck1 = 255 - (c1 + c2) % 255
    ck2 = 255 - (c1 + ck1) % 255
    return bytes([ck1, ck2])


def encode_duration(seconds: float) -> int:
    """Opcode2 for an event of ``seconds``: floor(sqrt(seconds / 2)), so the device never runs longer than asked.

    Refuses durations the byte cannot carry: under 2 s (D would be 0 = "unknown", i.e. no end) or over
    2 * 255**2 s."""
    hi = 2 * MAX_DURATION_BYTE**2
    if not math.isfinite(seconds) or not 2 <= seconds <= hi:
        raise CommandError(f"event duration = {seconds} s is outside the encodable range [2, {hi}] s")
    return min(MAX_DURATION_BYTE, math.isqrt(int(seconds) // 2))


def decode_duration(code: int) -> int | None:
    """Seconds an event with duration byte ``code`` lasts (None: 0 = unknown duration)."""
    if not 0 <= code <= MAX_DURATION_BYTE:
        raise ValueError(f"duration byte = {code} is outside [0, 255]")
    return None if code == 0 else 2 * code * code


# ----- frames ----------------------------------------------------------------------------------
def encode_message(msg_type: tuple[int, int], payload: bytes) -> bytes:
    """A full message frame: type, big-endian payload length, payload, checksum."""
    if not 1 <= len(payload) <= MAX_PAYLOAD:
        raise ValueError(f"payload length = {len(payload)} is outside [1, {MAX_PAYLOAD}]")
    head = bytes([msg_type[0], msg_type[1]]) + len(payload).to_bytes(2, "big") + payload
    return head + checksum(head)


def encode_basic(opcode1: int, opcode2: int) -> bytes:
    """A basic DR message (``08 01 00 02 op1 op2 ck1 ck2``)."""
    for name, v in (("opcode1", opcode1), ("opcode2", opcode2)):
        if not 0 <= v <= 255:
            raise ValueError(f"{name} = {v} is outside [0, 255]")
    return encode_message(BASIC, bytes([opcode1, opcode2]))


def encode_intermediate(op: int, body: bytes = b"") -> bytes:
    """An intermediate message with opcode pair ``op`` ((opcode1 << 8) | opcode2) and optional body."""
    return encode_message(INTERMEDIATE, op.to_bytes(2, "big") + body)


def link_nak(reason: LinkNak) -> bytes:
    """A link-layer NAK frame."""
    return bytes([LL_NAK_TYPE, int(reason)])


@dataclass(frozen=True)
class Frame:
    """A decoded frame: a link-layer ACK/NAK (``msg_type`` is (0x06, 0) or (0x15, reason)) or a message."""

    msg_type: tuple[int, int]
    payload: bytes = b""

    @property
    def is_ack(self) -> bool:
        return self.msg_type[0] == LL_ACK_TYPE

    @property
    def is_nak(self) -> bool:
        return self.msg_type[0] == LL_NAK_TYPE

    @property
    def is_link_layer(self) -> bool:
        return self.is_ack or self.is_nak

    @property
    def opcodes(self) -> tuple[int, int]:
        """(opcode1, opcode2) of a basic or intermediate message."""
        if self.is_link_layer or len(self.payload) < 2:
            raise ValueError("a link-layer ACK/NAK has no opcodes")
        return self.payload[0], self.payload[1]


def decode_frame(frame: bytes) -> Frame:
    """Check and split one complete frame; raises ``FrameError`` naming the link-layer NAK to answer with."""
    if len(frame) < 2:
        raise FrameError(f"frame of {len(frame)} bytes is too short", LinkNak.INVALID_LENGTH)
    if frame[0] in (LL_ACK_TYPE, LL_NAK_TYPE):
        if len(frame) != 2:
            raise FrameError("a link-layer ACK/NAK is exactly 2 bytes", LinkNak.INVALID_LENGTH)
        return Frame((frame[0], frame[1]))
    if len(frame) < 6:
        raise FrameError(f"message of {len(frame)} bytes is shorter than its 6-byte envelope", LinkNak.INVALID_LENGTH)
    length = int.from_bytes(frame[2:4], "big")
    if length != len(frame) - 6:
        raise FrameError(f"length field says {length} payload bytes, frame carries {len(frame) - 6}",
                         LinkNak.INVALID_LENGTH)
    if checksum(frame[:-2]) != frame[-2:]:
        raise FrameError("checksum does not match", LinkNak.CHECKSUM_ERROR)
    msg_type = (frame[0], frame[1])
    if msg_type not in (BASIC, INTERMEDIATE, DATA_LINK):
        raise FrameError(f"message type {frame[0]:02x} {frame[1]:02x} is not supported",
                         LinkNak.UNSUPPORTED_MESSAGE_TYPE)
    return Frame(msg_type, bytes(frame[4:-2]))


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """Read one raw frame from a byte stream (the serial line's stand-in), by its type and length field."""
    first = await reader.readexactly(2)
    if first[0] in (LL_ACK_TYPE, LL_NAK_TYPE):
        return first
    length_bytes = await reader.readexactly(2)
    length = int.from_bytes(length_bytes, "big")
    if length > MAX_PAYLOAD:
        raise FrameError(f"length field {length} exceeds the maximum payload {MAX_PAYLOAD}", LinkNak.INVALID_LENGTH)
    rest = await reader.readexactly(length + 2)
    return first + length_bytes + rest


# ----- intermediate bodies used for telemetry ----------------------------------------------------
@dataclass(frozen=True)
class CommodityRecord:
    """One commodity of a commodity-read response: instantaneous rate (W for electricity) and cumulative
    amount (Wh), each a 6-byte big-endian unsigned integer."""

    code: int
    instantaneous_rate: int
    cumulative_amount: int


def encode_commodity_response(records: list[CommodityRecord], response_code: int = 0) -> bytes:
    """An intermediate commodity-read response frame (``06 80 <response code> <13-byte records...>``)."""
    body = bytes([response_code])
    for r in records:
        body += bytes([r.code]) + r.instantaneous_rate.to_bytes(6, "big") + r.cumulative_amount.to_bytes(6, "big")
    return encode_intermediate(IntermediateOp.COMMODITY_RESPONSE, body)


def decode_commodity_response(frame: Frame) -> list[CommodityRecord]:
    """The commodity records of a decoded commodity-read response."""
    op = int.from_bytes(frame.payload[:2], "big")
    if frame.msg_type != INTERMEDIATE or op != IntermediateOp.COMMODITY_RESPONSE:
        raise ValueError(f"not a commodity-read response: type {frame.msg_type}, opcodes {op:04x}")
    body = frame.payload[3:]
    if len(body) % 13:
        raise ValueError(f"commodity records are 13 bytes each, got {len(body)} bytes")
    return [CommodityRecord(body[i], int.from_bytes(body[i + 1:i + 7], "big"), int.from_bytes(body[i + 7:i + 13], "big"))
            for i in range(0, len(body), 13)]


WATER_HEATER_ELECTRIC = 0x0002  # CTA-2045 device type
UNITS_CELSIUS = 0x01  # temperature units byte: 0 = F, 1 = C


def encode_present_temperature_response(temp_c: float, response_code: int = 0) -> bytes:
    """Present-temperature response (``03 84 <response code> <device type:2> <units> <temperature:2>``), in whole
    degrees C as the message carries them."""
    value = round(temp_c)
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"temperature = {temp_c} C is outside [0, 65535]")
    body = bytes([response_code]) + WATER_HEATER_ELECTRIC.to_bytes(2, "big") + bytes([UNITS_CELSIUS])
    return encode_intermediate(IntermediateOp.PRESENT_TEMPERATURE_RESPONSE, body + value.to_bytes(2, "big"))


def decode_present_temperature_response(frame: Frame) -> float:
    """Tank temperature in C from a decoded present-temperature response."""
    op = int.from_bytes(frame.payload[:2], "big")
    if frame.msg_type != INTERMEDIATE or op != IntermediateOp.PRESENT_TEMPERATURE_RESPONSE or len(frame.payload) != 8:
        raise ValueError(f"not a present-temperature response: type {frame.msg_type}, opcodes {op:04x}")
    units, value = frame.payload[5], int.from_bytes(frame.payload[6:8], "big")
    return float(value) if units == UNITS_CELSIUS else (value - 32.0) * 5.0 / 9.0


# ----- the UCM-side link ---------------------------------------------------------------------------
class Cta2045Link(DeviceLink):
    """A water heater reached over CTA-2045 (a TCP byte stream standing in for the serial line).

    ``send`` maps a ``WaterHeaterCommand`` to one basic DR message and waits for the link-layer ACK and the
    application ACK; a NAK at either layer comes back as ``CommandAck(accepted=False)`` with the reason. A
    repeated ``command_id`` that was already applied is acknowledged without being sent again. ``read`` asks
    the device's operational state, its commodity read (element power, energy used) and its tank temperature."""

    def __init__(self, device_id: str, host: str, port: int, *, clock: Callable[[], float] = time.time) -> None:
        if not device_id:
            raise ValueError("device_id must be non-empty")
        if not 0 < port < 65536:
            raise ValueError(f"port = {port} is outside [1, 65535]")
        self.device_id = device_id
        self.host, self.port = host, port
        self._clock = clock
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self._last_command_id: str | None = None
        self.messages_sent = 0  # DR/query messages put on the line (what the idempotency test counts)

    # -- connection
    async def _connect(self) -> None:
        if self._writer is not None and not self._writer.is_closing():
            return
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        # tell the SGD its UCM has a connection to the outside (CTA-2045 expects this before DR events)
        await self._exchange(encode_basic(Opcode.OUTSIDE_COMM_STATUS, CommStatus.FOUND))

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except (OSError, TimeoutError):
                pass

    async def _exchange(self, frame: bytes) -> Frame:
        """Send one message; return the application answer that follows the link-layer ACK (a NAK at the link
        layer comes back as that NAK frame)."""
        assert self._reader is not None and self._writer is not None
        self._writer.write(frame)
        await self._writer.drain()
        self.messages_sent += 1
        reply = decode_frame(await read_frame(self._reader))
        if reply.is_nak:
            return reply
        if not reply.is_ack:
            raise ConnectionError(f"expected a link-layer ACK, got message type {reply.msg_type}")
        raw = await read_frame(self._reader)
        try:
            answer = decode_frame(raw)
        except FrameError as err:
            self._writer.write(link_nak(err.nak))
            raise ConnectionError(f"device {self.device_id} answered with a bad frame: {err}") from err
        self._writer.write(LL_ACK)
        await self._writer.drain()
        return answer

    async def _run(self, frame: bytes, timeout_s: float) -> Frame:
        """Connect if needed and exchange one message, all within ``timeout_s``; a stream left mid-exchange by
        a timeout or error is closed so the next call starts clean."""
        if not math.isfinite(timeout_s) or timeout_s <= 0:
            raise ValueError(f"timeout_s = {timeout_s} must be a positive number of seconds")
        async with self._lock:
            try:
                async with asyncio.timeout(timeout_s):
                    await self._connect()
                    return await self._exchange(frame)
            except TimeoutError:
                await self.close()
                raise TimeoutError(f"CTA-2045 device {self.device_id} at {self.host}:{self.port} did not answer "
                                   f"within {timeout_s} s") from None
            except (OSError, asyncio.IncompleteReadError, FrameError) as err:
                await self.close()
                raise ConnectionError(f"CTA-2045 device {self.device_id} at {self.host}:{self.port}: {err}") from err

    # -- commands
    def encode(self, command: WaterHeaterCommand, now: float) -> bytes:
        """Validate ``command`` at time ``now`` and return its basic DR frame."""
        command.validate()
        env = command.envelope
        if env.device_id != self.device_id:
            raise CommandError(f"envelope.device_id = {env.device_id!r} is not this link's device {self.device_id!r}")
        if env.valid_until <= now:
            raise CommandError(f"valid_until = {env.valid_until} has passed (now {now}); the command expired")
        opcode = EVENT_OPCODES[command.event]
        if opcode not in DURATION_OPCODES:
            return encode_basic(opcode, 0)
        # the event ends no later than the envelope says (the device reverts to its own control then)
        return encode_basic(opcode, encode_duration(min(command.duration_s, env.valid_until - now)))

    async def send(self, command: Command, timeout_s: float) -> CommandAck:
        if not isinstance(command, WaterHeaterCommand):
            raise CommandError(f"a CTA-2045 link carries WaterHeaterCommand only, got {type(command).__name__}")
        cid = command.envelope.command_id
        if cid and cid == self._last_command_id:
            return CommandAck(cid, True, "already applied (repeated command_id)")
        frame = self.encode(command, self._clock())
        opcode = frame[4]
        answer = await self._run(frame, timeout_s)
        if answer.is_nak:
            return CommandAck(cid, False, f"link-layer NAK: {_name(LinkNak, answer.msg_type[1])}")
        if answer.msg_type != BASIC:
            return CommandAck(cid, False, f"unexpected answer of message type {answer.msg_type}")
        op1, op2 = answer.opcodes
        if op1 == Opcode.APP_NAK:
            return CommandAck(cid, False, f"application NAK: {_name(AppNak, op2)}")
        if op1 != Opcode.APP_ACK or op2 != opcode:
            return CommandAck(cid, False, f"unexpected answer opcodes {op1:02x} {op2:02x}")
        self._last_command_id = cid
        return CommandAck(cid, True)

    # -- telemetry
    async def read(self, timeout_s: float) -> Telemetry:
        deadline = asyncio.get_running_loop().time() + timeout_s

        def left() -> float:
            return max(deadline - asyncio.get_running_loop().time(), 1e-3)

        state_frame = await self._run(encode_basic(Opcode.OPER_STATE_QUERY, 0), left())
        if state_frame.is_nak or state_frame.msg_type != BASIC or state_frame.opcodes[0] != Opcode.OPER_STATE_RESPONSE:
            raise ConnectionError(f"device {self.device_id} did not answer the operational-state query")
        commodity = await self._run(encode_intermediate(IntermediateOp.COMMODITY_READ), left())
        records = {r.code: r for r in decode_commodity_response(commodity)}
        used = records.get(CommodityCode.ELECTRICITY_CONSUMED)
        if used is None:
            raise ConnectionError(f"device {self.device_id} reported no electricity-consumed commodity")
        temp_frame = await self._run(encode_intermediate(IntermediateOp.GET_PRESENT_TEMPERATURE), left())
        return Telemetry(
            device_id=self.device_id,
            measured_at=self._clock(),
            power_kw=used.instantaneous_rate / 1000.0,
            state={"temp_c": decode_present_temperature_response(temp_frame),
                   "operational_state": float(state_frame.opcodes[1]),
                   "energy_used_kwh": used.cumulative_amount / 1000.0},
        )


def _name(kind: type[enum.IntEnum], code: int) -> str:
    try:
        return kind(code).name.lower()
    except ValueError:
        return f"code 0x{code:02x}"
