"""SunSpec Modbus TCP over loopback: a pysunspec2-based link driving a simulated battery/PV inverter.

Independent checks: raw registers are read back with plain pymodbus at hand-worked addresses (the link uses
pysunspec2's client, the simulator pysunspec2's layout, so the addresses here are counted from the published
model definitions by hand), and battery SoC moves are worked by hand from the env's battery equation
E' = E + eta_c * max(p, 0) * dt + min(p, 0) / eta_d * dt."""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import struct

import pytest
import sunspec2.modbus.modbus as sunspec_modbus
from pymodbus.client import AsyncModbusTcpClient
from vpprl.deployment.commands import CommandError, CtaEvent, Envelope, PowerCommand, WaterHeaterCommand
from vpprl.deployment.protocols.sunspec_link import AddressNotAllowed, AllowList, SunSpecLink
from vpprl.deployment.simulators.sunspec_inverter import ScaleFactors, SunSpecInverterSim

NOW = 1_000_000.0
TIMEOUT = 3.0

# Hand-worked register addresses. "SunS" sits at 40000-40001; model 1 starts at 40002 and is 2 + 66 registers
# long (Mn 16, Md 16, Opt 8, Vr 8, SN 16, DA 1, Pad 1), so the next model starts at 40070.
# Model 704 point offsets (from its ID register): PFWInjEna 2, PFWInjEnaRvrt 3, PFWInjRvrtTms 4-5,
# PFWInjRvrtRem 6-7, PFWAbsEna 8, PFWAbsEnaRvrt 9, PFWAbsRvrtTms 10-11, PFWAbsRvrtRem 12-13, WMaxLimPctEna 14,
# WMaxLimPct 15, WMaxLimPctRvrt 16, WMaxLimPctEnaRvrt 17, WMaxLimPctRvrtTms 18-19, WMaxLimPctRvrtRem 20-21,
# WSetEna 22, WSetMod 23, WSet 24-25, WSetRvrt 26-27, WSetPct 28, WSetPctRvrt 29, WSetEnaRvrt 30,
# WSetRvrtTms 31-32, WSetRvrtRem 33-34; its length register reads 65 (67 registers in all).
M704 = 40070
WMAXLIMPCT_ENA, WMAXLIMPCT = M704 + 14, M704 + 15
WSET_ENA = M704 + 22  # WSetEna, WSetMod, WSet(2), WSetRvrt(2), WSetPct, WSetPctRvrt, WSetEnaRvrt, Tms(2), Rem(2)
# Legacy map: model 103 (2 + 50 registers) follows model 1, so model 124 starts at 40070 + 52 = 40122;
# StorCtl_Mod is its offset 5, OutWRte 12, InWRte 13, InOutWRte_WinTms 14, InOutWRte_RvrtTms 15.
M124 = 40122


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30.0))


def power(setpoint_kw: float, cid: str = "bat-1:1", valid_for_s: float = 900.0, lo: float = -10.0, hi: float = 10.0,
          device_id: str = "bat-1") -> PowerCommand:
    return PowerCommand(Envelope(cid, device_id, NOW, NOW + valid_for_s), setpoint_kw, lo, hi)


@contextlib.asynccontextmanager
async def sim_and_link(kind: str = "battery", link_kwargs: dict | None = None, **sim_kwargs):
    sim = SunSpecInverterSim(kind, **sim_kwargs)
    host, port = await sim.start()
    link = SunSpecLink(f"{'bat' if kind == 'battery' else 'pv'}-1", host, port, allow=[f"{host}:{port}"],
                       kind=kind, clock=lambda: NOW, **(link_kwargs or {}))
    try:
        yield sim, link, (host, port)
    finally:
        await link.close()
        await sim.stop()


async def raw_registers(addr: tuple[str, int], start: int, count: int) -> list[int]:
    """Holding registers read with plain pymodbus, independent of pysunspec2."""
    client = AsyncModbusTcpClient(addr[0], port=addr[1], timeout=TIMEOUT, retries=0)
    await asyncio.wait_for(client.connect(), TIMEOUT)
    try:
        rr = await asyncio.wait_for(client.read_holding_registers(start, count=count, device_id=1), TIMEOUT)
        assert not rr.isError(), rr
        return list(rr.registers)
    finally:
        client.close()


def int32(hi: int, lo: int) -> int:
    return struct.unpack(">i", struct.pack(">HH", hi, lo))[0]


def int16(reg: int) -> int:
    return struct.unpack(">h", struct.pack(">H", reg))[0]


def discharged_soc(soc0: float, kw: float, seconds: float, eta_d: float = 0.95, cap: float = 10.0) -> float:
    return soc0 - kw * seconds / 3600.0 / eta_d / cap


# ----- discovery -------------------------------------------------------------------------------------
def test_discovery_finds_common_and_der_controls_and_legacy_storage():
    async def main():
        async with sim_and_link() as (_, link, addr):
            models = await link.discover(TIMEOUT)
            assert models[:2] == [1, 704] and {701, 702, 713} <= set(models)
            head = await raw_registers(addr, 40000, 4)
            assert head == [0x5375, 0x6E53, 1, 66]  # "SunS", model 1, length 66
            assert await raw_registers(addr, M704, 2) == [704, 65]
        async with sim_and_link(legacy=True, link_kwargs={"capacity_kwh": 10.0}) as (_, link, addr):
            assert await link.discover(TIMEOUT) == [1, 103, 124]
            assert (await raw_registers(addr, M124, 2)) == [124, 24]

    run(main())


# ----- WSet (model 704) ---------------------------------------------------------------------------------
@pytest.mark.parametrize("wset_sf, raw", [(-2, 300000), (0, 3000), (1, 300)])
def test_wset_discharge_moves_soc_by_hand_worked_amount_and_reverts(wset_sf, raw):
    # -3 kW (delivered into the grid) for 900 s from SoC 0.5 of 10 kWh at eta_d = 0.95:
    # E drops 3 * 0.25 / 0.95 = 0.7894737 kWh -> SoC 0.4210526
    assert discharged_soc(0.5, 3.0, 900) == pytest.approx(0.4210526, abs=1e-7)

    async def main():
        async with sim_and_link(sf=ScaleFactors(wset=wset_sf)) as (sim, link, addr):
            ack = await link.send(power(-3.0), TIMEOUT)
            assert ack.accepted and ack.command_id == "bat-1:1"
            regs = await raw_registers(addr, WSET_ENA, 13)
            assert regs[0] == 1 and regs[1] == 1  # WSetEna enabled, WSetMod = watts
            # SunSpec W is + for generation: 3 kW delivered is WSet = +3000 W = raw * 10**sf
            assert int32(regs[2], regs[3]) == raw
            assert regs[8] == 0  # WSetEnaRvrt off: at the timer the device goes back to its own control
            assert (regs[9] << 16 | regs[10]) == 900 and (regs[11] << 16 | regs[12]) == 900  # RvrtTms, RvrtRem
            tel = await link.read(TIMEOUT)
            assert tel.power_kw == pytest.approx(-3.0)  # our sign: - = into the grid
            sim.step(600.0)
            assert sim.soc == pytest.approx(discharged_soc(0.5, 3.0, 600), abs=1e-12)
            regs = await raw_registers(addr, WSET_ENA, 13)
            assert regs[0] == 1 and (regs[11] << 16 | regs[12]) == 300  # 300 s left on the timer
            sim.step(300.0)
            assert sim.soc == pytest.approx(discharged_soc(0.5, 3.0, 900), abs=1e-12)
            regs = await raw_registers(addr, WSET_ENA, 13)
            assert regs[0] == 0 and (regs[11] << 16 | regs[12]) == 0  # reverted: WSet disabled
            tel = await link.read(TIMEOUT)
            assert tel.power_kw == 0.0
            assert tel.state["soc_kwh"] == pytest.approx(4.210526, abs=1e-3)  # 713 SoC is 0.01 % of 10 kWh
            sim.step(600.0)  # own control: the battery idles, SoC holds
            assert sim.soc == pytest.approx(discharged_soc(0.5, 3.0, 900), abs=1e-12)

    run(main())


def test_charging_is_a_negative_wset():
    # +2 kW (drawn from the grid) for 900 s: E rises 2 * 0.25 * 0.95 = 0.475 kWh -> SoC 0.5475
    async def main():
        async with sim_and_link(sf=ScaleFactors(wset=-2)) as (sim, link, addr):
            assert (await link.send(power(2.0), TIMEOUT)).accepted
            regs = await raw_registers(addr, WSET_ENA, 4)
            assert int32(regs[2], regs[3]) == -200000  # -2000 W (absorption) at scale factor -2
            assert (await link.read(TIMEOUT)).power_kw == pytest.approx(2.0)
            sim.step(900.0)
            assert sim.soc == pytest.approx(0.5475, abs=1e-12)

    run(main())


# ----- model 124 (legacy storage controls) --------------------------------------------------------------
def test_legacy_storage_rates_pin_the_setpoint_and_revert():
    async def main():
        async with sim_and_link(legacy=True, link_kwargs={"capacity_kwh": 10.0}) as (sim, link, addr):
            assert (await link.send(power(-3.0), TIMEOUT)).accepted
            regs = await raw_registers(addr, M124, 16)
            # -3 kW of WChaMax 5000 W = -60 %, InOutWRte_SF = -1 -> raw 600: OutWRte +600, InWRte -600
            assert regs[5] == 0b11  # StorCtl_Mod: charge and discharge limits on
            assert int16(regs[12]) == 600 and int16(regs[13]) == -600
            assert regs[15] == 900  # InOutWRte_RvrtTms
            assert (await link.read(TIMEOUT)).power_kw == pytest.approx(-3.0)
            sim.step(900.0)
            assert sim.soc == pytest.approx(discharged_soc(0.5, 3.0, 900), abs=1e-12)
            assert (await raw_registers(addr, M124, 6))[5] == 0  # reverted: limits off, own control
            tel = await link.read(TIMEOUT)
            assert tel.power_kw == 0.0 and tel.state["soc_kwh"] == pytest.approx(4.21, abs=0.01)  # ChaState 0.1 %

    run(main())


# ----- PV curtailment (WMaxLimPct) ---------------------------------------------------------------------
def test_pv_curtailment_as_wmaxlimpct():
    async def main():
        async with sim_and_link("pv", pv_kwp=5.0, sf=ScaleFactors(wmaxlimpct=-1)) as (sim, link, addr):
            sim.set_resource(0.8)  # 4 kW available
            assert (await link.read(TIMEOUT)).power_kw == pytest.approx(-4.0)
            ack = await link.send(power(-2.0, cid="pv-1:1", lo=-5.0, hi=0.0, device_id="pv-1"), TIMEOUT)
            assert ack.accepted
            regs = await raw_registers(addr, WMAXLIMPCT_ENA, 2)
            assert regs == [1, 400]  # 2 kW of WMax 5000 W = 40.0 %, scale factor -1 -> 400
            sim.step(60.0)
            assert sim.power_kw == pytest.approx(-2.0)
            assert (await link.read(TIMEOUT)).power_kw == pytest.approx(-2.0)
            sim.step(840.0)  # the 900 s reversion timer runs out: the cap lifts
            assert (await raw_registers(addr, WMAXLIMPCT_ENA, 1)) == [0]
            assert (await link.read(TIMEOUT)).power_kw == pytest.approx(-4.0)
            with pytest.raises(CommandError, match=r"setpoint_kw = 1.0 is outside the device's range \[-5.0, 0.0\]"):
                await link.send(power(1.0, cid="pv-1:2", lo=-5.0, hi=5.0, device_id="pv-1"), TIMEOUT)

    run(main())


# ----- refusals -----------------------------------------------------------------------------------------
def test_out_of_range_nan_and_expired_commands_are_refused_without_a_write():
    async def main():
        async with sim_and_link() as (sim, link, _):
            cases = [
                (power(-8.0), r"setpoint_kw = -8.0 is outside the device's range \[-5.0, 5.0\]"),
                (power(math.nan), r"setpoint_kw = nan is outside the allowed range"),
                (power(3.0, lo=-2.0, hi=2.0), r"setpoint_kw = 3.0 is outside the allowed range \[-2.0, 2.0\]"),
                (power(1.0, valid_for_s=0.5), r"valid_until = .* a command must be valid for at least 1 s"),
                (power(1.0, device_id="bat-9"), r"envelope.device_id = 'bat-9'"),
            ]
            for cmd, pattern in cases:
                with pytest.raises(CommandError, match=pattern):
                    await link.send(cmd, TIMEOUT)
            wh = WaterHeaterCommand(Envelope("w", "bat-1", NOW, NOW + 60), CtaEvent.SHED, 60)
            with pytest.raises(CommandError, match="PowerCommand only"):
                await link.send(wh, TIMEOUT)
            assert sim.writes == []

    run(main())


class _SocketSpy:
    """Stands in for the ``socket`` module inside pysunspec2's Modbus client only, counting sockets opened."""

    def __init__(self) -> None:
        self.opened = 0

    def socket(self, *args, **kwargs):
        self.opened += 1
        return socket.socket(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(socket, name)


def test_address_off_the_allow_list_is_refused_before_any_socket(monkeypatch):
    spy = _SocketSpy()

    async def main():
        sim = SunSpecInverterSim()
        host, port = await sim.start()
        try:
            monkeypatch.setattr(sunspec_modbus, "socket", spy)
            with pytest.raises(AddressNotAllowed, match=rf"{host}:{port} is not on the allow list"):
                SunSpecLink("bat-1", host, port, allow=[f"{host}:{port + 1}"])
            with pytest.raises(AddressNotAllowed, match="localhost"):  # names are not resolved
                SunSpecLink("bat-1", "localhost", port, allow=[(host, port)])
            assert spy.opened == 0 and sim.connections == 0
            link = SunSpecLink("bat-1", host, port, allow=AllowList([f"{host}:{port}"]))  # allowed: connects
            assert 704 in await link.discover(TIMEOUT)
            assert spy.opened == 1 and sim.connections == 1
            await link.close()
        finally:
            await sim.stop()

    run(main())
    for bad in (["127.0.0.1"], ["127.0.0.1:0"], [("127.0.0.1", 70000)]):
        with pytest.raises(ValueError, match="must be host:port with port in"):
            AllowList(bad)


def test_repeated_command_id_is_not_rewritten():
    async def main():
        async with sim_and_link() as (sim, link, _):
            cmd = power(-1.0, cid="bat-1:42")
            assert (await link.send(cmd, TIMEOUT)).accepted
            writes = len(sim.writes)
            assert writes == 2  # the timer block, then enable + setpoint
            again = await link.send(cmd, TIMEOUT)
            assert again.accepted and "already applied" in again.reason
            assert len(sim.writes) == writes
            assert (await link.send(power(-1.0, cid="bat-1:43"), TIMEOUT)).accepted
            assert len(sim.writes) == writes + 2

    run(main())


def test_device_refusing_the_write_is_a_refused_ack_and_not_remembered():
    async def main():
        async with sim_and_link() as (sim, link, addr):
            sim.remote_control = False  # writes answered with Modbus exception 6 (device busy)
            cmd = power(-1.0, cid="bat-1:50")
            ack = await link.send(cmd, TIMEOUT)
            assert not ack.accepted and "device refused the write" in ack.reason and "exception: 6" in ack.reason
            assert sim.writes == [] and (await raw_registers(addr, WSET_ENA, 1)) == [0]
            sim.remote_control = True  # the refused id was not remembered: sending it again applies it
            assert (await link.send(cmd, TIMEOUT)).accepted and len(sim.writes) == 2

    run(main())


def test_silent_device_times_out_without_hanging():
    async def main():
        async def swallow(reader, writer):
            with contextlib.suppress(Exception):
                await reader.read()  # accept and never answer
            writer.close()

        server = await asyncio.start_server(swallow, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        link = SunSpecLink("bat-1", "127.0.0.1", port, allow=[("127.0.0.1", port)], clock=lambda: NOW)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            with pytest.raises((TimeoutError, ConnectionError)):
                await link.send(power(-1.0), 0.5)
            assert loop.time() - t0 < 2.0
        finally:
            await link.close()
            server.close()
            await server.wait_closed()

    run(main())
