"""CTA-2045 basic DR: frames byte for byte against EPRI's published examples and hand-worked checksums, and a
UCM link driving a simulated water heater over loopback TCP, checked against hand-worked tank physics."""

from __future__ import annotations

import asyncio
import contextlib
import math

import pytest
from vpprl.deployment.commands import CommandError, CtaEvent, Envelope, PowerCommand, WaterHeaterCommand
from vpprl.deployment.protocols.cta2045 import (
    LL_ACK,
    CommodityCode,
    CommodityRecord,
    CommStatus,
    Cta2045Link,
    FrameError,
    LinkNak,
    OperationalState,
    checksum,
    decode_commodity_response,
    decode_duration,
    decode_frame,
    encode_basic,
    encode_commodity_response,
    encode_duration,
    link_nak,
    read_frame,
)
from vpprl.deployment.simulators.cta2045_device import Cta2045WaterHeaterSim, WaterHeaterSpec

NOW = 1_000_000.0
TIMEOUT = 2.0

# EPRI CTA-2045 UCM library, test/test/unit/ChecksumUnitTest.cpp: application ACKs with valid checksums
EPRI_VALID = ["08 01 00 02 03 0e e9 4f", "08 01 00 02 03 0b ef 4c", "08 01 00 02 03 07 f7 48",
              "08 01 00 02 03 01 04 42"]
EPRI_INVALID = "08 01 00 02 03 02 04 42"
# same library, test/test/unit/CEA2045MesssageUnitTest.cpp: a commodity response with three records
EPRI_COMMODITY = bytes([0x8, 0x2, 0x0, 0x2A, 0x6, 0x80, 0x0, 0x0, 0x0, 0x0, 0x49, 0x96, 0x2, 0xD2,
                        0x0, 0x2, 0x4C, 0xB0, 0x16, 0xEA, 0x6, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0,
                        0x0, 0x0, 0x49, 0x96, 0x2, 0xD2, 0x7, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0,
                        0x0, 0x2, 0x4C, 0xB0, 0x16, 0xEA, 0x3, 0x21])
# ... and its device-information response (intermediate 01 81), checksum 5B F1
EPRI_DEVICE_INFO = bytes([0x08, 0x02, 0x00, 0x35, 0x01, 0x81, 0x00, 0x31, 0x30, 0x44, 0x55, 0x00, 0x00, 0x55, 0x66,
                          0x20, 0x21, 0x22, 0x23, 0x00] + [0x30] * 32 + [0x01, 0x01, 0x01, 0x00, 0x00, 0x5B, 0xF1])

# Hand-worked tank numbers for the default spec (200 l, UA 0.0025 kW/K, inlet 12 C, ambient 20 C):
# heat capacity c = 200 * 4.186 / 3600 = 0.2325556 kWh/K; over 1 h the standby loss takes
# UA * 1 h / c = 0.0025 * 3600 / (200 * 4.186) = 0.01075012 of (T1 - ambient).
LOSS_1H = 0.0025 * 3600 / (200 * 4.186)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20.0))


def command(event: CtaEvent, duration_s: int, cid: str = "wh-1:1", valid_for_s: float = 86400.0,
            device_id: str = "wh-1") -> WaterHeaterCommand:
    return WaterHeaterCommand(Envelope(cid, device_id, NOW, NOW + valid_for_s), event, duration_s)


@contextlib.asynccontextmanager
async def sim_and_link(spec: WaterHeaterSpec | None = None):
    sim = Cta2045WaterHeaterSim(spec or WaterHeaterSpec())
    host, port = await sim.start()
    link = Cta2045Link("wh-1", host, port, clock=lambda: NOW)
    try:
        yield sim, link
    finally:
        await link.close()
        await sim.stop()


# ----- frames ----------------------------------------------------------------------------------
def test_checksum_reproduces_epri_example_frames():
    for text in EPRI_VALID:
        frame = h(text)
        assert checksum(frame[:-2]) == frame[-2:]
        assert decode_frame(frame).opcodes == (frame[4], frame[5])
    assert checksum(EPRI_COMMODITY[:-2]) == h("03 21")
    assert checksum(EPRI_DEVICE_INFO[:-2]) == h("5b f1")
    with pytest.raises(FrameError) as err:
        decode_frame(h(EPRI_INVALID))
    assert err.value.nak is LinkNak.CHECKSUM_ERROR


def test_shed_frame_byte_exact_against_hand_worked_checksum():
    # 7200 s -> D = sqrt(7200 / 2) = 60 = 0x3C. Checksum by hand over 08 01 00 02 01 3C, c1 = 0xAA = 170:
    # c1: 178 179 179 181 182 242; c2: 178 102 26 207 134 121
    # ck1 = 255 - (242 + 121) % 255 = 255 - 108 = 147 = 0x93; ck2 = 255 - (242 + 147) % 255 = 255 - 134 = 121 = 0x79
    link = Cta2045Link("wh-1", "127.0.0.1", 9)
    assert link.encode(command(CtaEvent.SHED, 7200), NOW) == h("08 01 00 02 01 3c 93 79")
    # the application ACK for a shed is EPRI's published 08 01 00 02 03 01 04 42
    assert encode_basic(0x03, 0x01) == h(EPRI_VALID[3])
    assert LL_ACK == h("06 00") and link_nak(LinkNak.CHECKSUM_ERROR) == h("15 03")
    # each event goes out with its own opcode1 (CTA-2045-A basic DR table)
    opcodes = {CtaEvent.SHED: 0x01, CtaEvent.END_SHED: 0x02, CtaEvent.CRITICAL_PEAK: 0x0A,
               CtaEvent.GRID_EMERGENCY: 0x0B, CtaEvent.LOAD_UP: 0x17}
    for event, op in opcodes.items():
        frame = link.encode(command(event, 0 if event is CtaEvent.END_SHED else 7200), NOW)
        assert frame[:5] == bytes([0x08, 0x01, 0x00, 0x02, op])
        assert frame[5] == (0 if event is CtaEvent.END_SHED else 60)


def test_duration_byte_encoding():
    assert encode_duration(7200) == 60 and decode_duration(60) == 7200
    assert encode_duration(3600) == 42 and decode_duration(42) == 3528  # floor: never longer than asked
    assert encode_duration(2) == 1 and encode_duration(130050) == 255
    assert decode_duration(0) is None  # 0 = unknown duration
    for bad in (0, 1.9, 130051, math.nan):
        with pytest.raises(CommandError, match=r"event duration = .* outside the encodable range \[2, 130050\]"):
            encode_duration(bad)
    # valid_until caps the event: 7200 s asked, but the command expires in 1000 s -> D = floor(sqrt(500)) = 22
    link = Cta2045Link("wh-1", "127.0.0.1", 9)
    assert link.encode(command(CtaEvent.SHED, 7200, valid_for_s=1000.0), NOW)[5] == 22


def test_commodity_response_matches_epri_example():
    records = decode_commodity_response(decode_frame(EPRI_COMMODITY))
    assert records == [CommodityRecord(CommodityCode.ELECTRICITY_CONSUMED, 1234567890, 9876543210),
                       CommodityRecord(CommodityCode.TOTAL_ENERGY_STORAGE, 0, 1234567890),
                       CommodityRecord(CommodityCode.PRESENT_ENERGY_STORAGE, 0, 9876543210)]
    assert encode_commodity_response(records) == EPRI_COMMODITY


def test_length_field_mismatch_is_invalid_length():
    with pytest.raises(FrameError) as err:
        decode_frame(h("08 01 00 03 01 3c 93 79"))
    assert err.value.nak is LinkNak.INVALID_LENGTH


# ----- the simulated device over loopback -------------------------------------------------------------
def test_corrupted_frame_is_naked_and_not_applied():
    async def main():
        sim = Cta2045WaterHeaterSim()
        host, port = await sim.start()
        reader, writer = await asyncio.open_connection(host, port)
        try:
            good = h("08 01 00 02 01 3c 93 79")
            writer.write(good[:-1] + bytes([good[-1] ^ 0xFF]))
            await writer.drain()
            assert await asyncio.wait_for(reader.readexactly(2), TIMEOUT) == h("15 03")
            assert sim.event is None and sim.events_received == []
            writer.write(good)
            await writer.drain()
            assert await asyncio.wait_for(reader.readexactly(2), TIMEOUT) == h("06 00")
            assert await asyncio.wait_for(read_frame(reader), TIMEOUT) == h(EPRI_VALID[3])
            assert sim.event is CtaEvent.SHED and sim.event_remaining_s == 7200
            # an opcode the device does not support: link-layer ACK, then application NAK 04 01
            writer.write(encode_basic(0x07, 0x00))  # present relative price
            await writer.drain()
            assert await asyncio.wait_for(reader.readexactly(2), TIMEOUT) == h("06 00")
            assert await asyncio.wait_for(read_frame(reader), TIMEOUT) == encode_basic(0x04, 0x01)
        finally:
            writer.close()
            await sim.stop()

    run(main())


def test_shed_for_one_hour_keeps_element_off_and_tank_cools_by_hand_worked_amount():
    # T1 = 52 - (20 / 200) * (52 - 12) = 48.0 after mixing in a 20 l draw;
    # T' = 48.0 - 0.01075012 * (48.0 - 20) = 47.6989967 with the element off (above the 45 C floor)
    expected = 48.0 - LOSS_1H * (48.0 - 20.0)
    assert expected == pytest.approx(47.6989967, abs=1e-6)

    async def main():
        async with sim_and_link() as (sim, link):
            ack = await link.send(command(CtaEvent.SHED, 7200), TIMEOUT)
            assert ack.accepted and ack.command_id == "wh-1:1"
            assert sim.comm_status is CommStatus.FOUND  # the link announced its outside connection
            sim.step(3600.0, draw_l=20.0)
            assert sim.temp_c == pytest.approx(expected, abs=1e-9)
            assert sim.element_kw == 0.0
            tel = await link.read(TIMEOUT)
            assert tel.power_kw == 0.0
            assert tel.state["operational_state"] == OperationalState.IDLE_CURTAILED
            assert tel.state["temp_c"] == 48.0  # the message carries whole degrees
            # second hour, no draw: still shed, still above the floor -> off
            sim.step(3600.0)
            assert sim.temp_c == pytest.approx(expected - LOSS_1H * (expected - 20.0), abs=1e-9)
            # the 7200 s event ran out exactly now: back to the tank's own thermostat, which heats
            assert sim.event is None
            sim.step(60.0)
            assert sim.element_kw == pytest.approx(4.5)  # 52 C is far: the element runs at full power
            tel = await link.read(TIMEOUT)
            assert tel.state["operational_state"] == OperationalState.RUNNING_NORMAL
            assert tel.power_kw == pytest.approx(4.5)
            assert tel.state["energy_used_kwh"] == pytest.approx(4.5 * 60 / 3600, abs=1e-3)

    run(main())


def test_shed_heats_only_to_the_comfort_floor():
    # start 45.5 C, 20 l draw: T1 = 45.5 - 0.1 * 33.5 = 42.15; free = 42.15 - 0.01075012 * 22.15 = 41.91189,
    # below 45: the element adds (45 - 41.91189) * c = 0.71816 kW over the hour and ends exactly at 45 C
    free = 42.15 - LOSS_1H * 22.15
    need_kw = (45.0 - free) * 200 * 4.186 / 3600

    async def main():
        async with sim_and_link(WaterHeaterSpec(initial_temp_c=45.5)) as (sim, link):
            assert (await link.send(command(CtaEvent.SHED, 7200), TIMEOUT)).accepted
            sim.step(3600.0, draw_l=20.0)
            assert sim.temp_c == pytest.approx(45.0, abs=1e-9)
            assert sim.element_kw == pytest.approx(need_kw, rel=1e-9)
            assert need_kw == pytest.approx(0.71816, abs=1e-4)
            assert sim.operational_state() is OperationalState.RUNNING_CURTAILED

    run(main())


def test_load_up_heats_toward_max():
    # 600 s from 52 C: free = 52 - 0.01075012 / 6 * 32 = 51.942666; full element 4.5 kW adds
    # 4.5 * (1/6 h) / 0.2325556 kWh/K = 3.2250358 K -> 55.167702 C (still short of the 75 C limit)
    expected = 52.0 - LOSS_1H / 6 * 32.0 + 4.5 / 6 / (200 * 4.186 / 3600)

    async def main():
        async with sim_and_link() as (sim, link):
            assert (await link.send(command(CtaEvent.LOAD_UP, 3600), TIMEOUT)).accepted
            sim.step(600.0)
            assert sim.temp_c == pytest.approx(expected, abs=1e-9)
            assert expected == pytest.approx(55.167702, abs=1e-6)
            assert (await link.read(TIMEOUT)).state["operational_state"] == OperationalState.RUNNING_HEIGHTENED
            # end shed returns the tank to its own control at once
            assert (await link.send(command(CtaEvent.END_SHED, 0, cid="wh-1:2"), TIMEOUT)).accepted
            assert sim.event is None

    run(main())


def test_repeated_command_id_is_applied_once():
    async def main():
        async with sim_and_link() as (sim, link):
            cmd = command(CtaEvent.SHED, 7200, cid="wh-1:7")
            first = await link.send(cmd, TIMEOUT)
            second = await link.send(cmd, TIMEOUT)
            assert first.accepted and second.accepted and "already applied" in second.reason
            assert sim.events_received == [(0x01, 60)]
            await link.send(command(CtaEvent.SHED, 7200, cid="wh-1:8"), TIMEOUT)  # a new id is sent
            assert sim.events_received == [(0x01, 60), (0x01, 60)]

    run(main())


def test_application_nak_is_a_refused_ack_with_the_reason():
    async def main():
        async with sim_and_link() as (sim, link):
            sim.customer_override = True
            cmd = command(CtaEvent.SHED, 7200, cid="wh-1:9")
            ack = await link.send(cmd, TIMEOUT)
            assert not ack.accepted and ack.reason == "application NAK: customer_override"
            assert sim.event is None
            sim.customer_override = False  # a refused id is not remembered: resending it applies it
            assert (await link.send(cmd, TIMEOUT)).accepted and sim.event is CtaEvent.SHED

    run(main())


def test_silent_device_times_out_without_hanging():
    async def main():
        async with sim_and_link() as (sim, link):
            sim.mute = True
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(TimeoutError, match="did not answer within 0.3 s"):
                await link.send(command(CtaEvent.SHED, 7200), 0.3)
            assert loop.time() - t0 < 1.5

    run(main())


def test_bad_commands_are_refused_before_anything_is_sent():
    # nothing listens on port 9: a refused command must not even try to connect
    link = Cta2045Link("wh-1", "127.0.0.1", 9, clock=lambda: NOW)
    cases = [
        (command(CtaEvent.SHED, 7200, valid_for_s=1.0), "valid_until = .* has passed"),
        (command(CtaEvent.SHED, 0), r"event duration = 0 s is outside the encodable range \[2, 130050\]"),
        (command(CtaEvent.SHED, 70000), r"duration_s = 70000 is outside the allowed range \[0, 65535\]"),
        (command(CtaEvent.END_SHED, 60), r"duration_s = 60 is outside the allowed range \[0, 0\]"),
        (command(CtaEvent.SHED, 7200, device_id="wh-2"), "envelope.device_id = 'wh-2'"),
    ]
    late = Cta2045Link("wh-1", "127.0.0.1", 9, clock=lambda: NOW + 2.0)
    for cmd, pattern in cases:
        target = late if "has passed" in pattern else link
        with pytest.raises(CommandError, match=pattern):
            run(target.send(cmd, TIMEOUT))
    power = PowerCommand(Envelope("x", "wh-1", NOW, NOW + 60), 1.0, -5.0, 5.0)
    with pytest.raises(CommandError, match="WaterHeaterCommand only"):
        run(link.send(power, TIMEOUT))
    assert link.messages_sent == 0 and late.messages_sent == 0
