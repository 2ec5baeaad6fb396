"""Simulated homes behind real protocols on loopback, built from a twin ``VppEnv``.

References the code under test did not compute: the twin's own parameters and states (ownership read from the
raw parameter arrays, initial states from the twin's devices), hand-worked physics from those parameters
(battery E' = E - P dt / eta_d; EV E' = E - P dt / eta; a tank with the element off loses to the draw and to
standby; the RC home's exact step under its own control toward the shifted setpoint), the protocols'
published resolutions (CTA-2045 temperatures in whole degC, SunSpec 713 SoC in 0.01 % of a 1 Wh rating), and
the twin itself stepped with action 0 (every device under its own control) over the same data.
"""

from __future__ import annotations

import asyncio
import gc
import math
import ssl
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from vpprl.deployment.command_builder import DeviceSlot
from vpprl.deployment.commands import CtaEvent, Envelope, PowerCommand, ThermostatCommand, WaterHeaterCommand
from vpprl.deployment.protocols.sunspec_link import AddressNotAllowed, SunSpecLink
from vpprl.deployment.simulated_fleet import SimulatedFleet, start_simulated_fleet
from vpprl.deployment.simulators.charge_point import ChargePointSpec, SimulatedChargePoint
from vpprl.deployment.tls_testing import client_ssl_context
from vpprl.envs.fleet import BATTERY, EV, FLEX, THERMOSTAT, WATER_HEATER
from vpprl.envs.fleet_config import FleetConfig, Ownership
from vpprl.envs.vpp_env import VppEnv

SEED = 5  # FleetConfig(num_homes=4, seed=5): every class owned somewhere, three EVs plugged in at the start
TIMEOUT = 5.0
NAMES = {BATTERY: "battery", EV: "ev", WATER_HEATER: "water_heater", THERMOSTAT: "thermostat"}


def run(coro, limit_s: float = 30.0):
    return asyncio.run(asyncio.wait_for(coro, limit_s))


def make_twin(num_homes: int = 4, seed: int = SEED, ownership: Ownership | None = None) -> VppEnv:
    twin = VppEnv(fleet=FleetConfig(num_homes=num_homes, seed=seed, ownership=ownership or Ownership()),
                  start_day=100)
    twin.reset(seed=0)
    return twin


def owners(twin: VppEnv) -> dict[int, list[int]]:
    """Homes per class, from the raw parameter arrays (not the fleet's ``owned`` masks)."""
    f = twin.fleet
    raw = {BATTERY: f.battery.params.capacity_kwh, EV: f.ev.params.max_charge_kw,
           WATER_HEATER: f.water_heater.params.element_kw, THERMOSTAT: f.thermostat.params.heat_pump_kw}
    return {j: [int(h) for h in np.flatnonzero(v > 0)] for j, v in raw.items()}


async def read_all(fleet: SimulatedFleet) -> dict[DeviceSlot, object]:
    slots = list(fleet.links)
    tels = await asyncio.gather(*(fleet.links[s].read(TIMEOUT) for s in slots))
    return dict(zip(slots, tels))


def cop_heating(t_out: float) -> float:
    return min(max(3.0 + 0.06 * (t_out - 7.0), 1.5), 5.0)


def cop_cooling(t_out: float) -> float:
    return min(max(4.0 - 0.08 * (t_out - 27.0), 2.0), 6.0)


# ----- the twin's state through every protocol, one command per class, worked by hand ----------------------
def test_links_read_the_twins_state_and_one_command_per_class_moves_it_as_worked_by_hand(tmp_path: Path) -> None:
    twin = make_twin()
    f = twin.fleet
    own = owners(twin)
    assert all(own[j] for j in NAMES), f"seed {SEED} must own every class: {own}"
    k0 = f.t
    dt = 900.0
    dt_h = dt / 3600.0
    grid = f.grid_at(k0)  # the data's truth for the step: outdoor degC, GHI W/m2 first
    draws = f.scaled_inputs(k0)["dhw_draw_l"]

    async def scenario() -> None:
        fleet = await start_simulated_fleet(twin, start_time=time.time(), tmp_dir=tmp_path)
        try:
            expected = {(h, j, f"home{h}/{NAMES[j]}") for j, homes in own.items() for h in homes}
            assert {(s.home, s.device_class, s.device_id) for s in fleet.links} == expected
            now = fleet.clock()

            # ---- initial telemetry equals the twin's states, within each protocol's resolution
            tel = await read_all(fleet)
            for slot, t in tel.items():
                h = slot.home
                assert t.device_id == slot.device_id and abs(t.measured_at - now) < 2e-3  # OCPP stamps in ms
                if slot.device_class == BATTERY:
                    cap = float(f.battery.params.capacity_kwh[h])
                    # SoC in 0.01 % steps, rating in whole Wh: |error| <= cap * 5e-5 + 0.5 Wh
                    assert t.state["soc_kwh"] == pytest.approx(float(f.battery.energy_kwh[h]), abs=cap * 5e-5 + 5e-4)
                elif slot.device_class == EV:
                    assert t.state["connected"] == float(f.ev.connected[h])
                    if f.ev.connected[h]:
                        assert t.state["soc_kwh"] == pytest.approx(float(f.ev.energy_kwh[h]), rel=1e-6)
                        assert t.state["capacity_kwh"] == pytest.approx(float(f.ev.capacity_kwh[h]))
                elif slot.device_class == WATER_HEATER:
                    assert t.state["temp_c"] == round(float(f.water_heater.temp_c[h]))  # whole degC on the wire
                else:
                    assert t.state["temp_c"] == pytest.approx(float(f.thermostat.temp_c[h]), abs=1e-5)
                    comfort = f.thermostat.params
                    assert t.state["setpoint_c"] == pytest.approx(0.5 * float(comfort.comfort_low_c[h]
                                                                              + comfort.comfort_high_c[h]))

            # ---- one command per class, each valid for the whole step (1200 s > 900 s)
            def env(slot: DeviceSlot) -> Envelope:
                return Envelope(f"{slot.device_id}:1", slot.device_id, now, now + 1200.0)

            bat = fleet.slot(own[BATTERY][0], BATTERY)
            e_bat = float(f.battery.energy_kwh[bat.home])
            bat_kw = -1.5
            plugged = [h for h in own[EV] if f.ev.connected[h] and f.ev.hours_to_departure[h] > 0.5]
            assert plugged, "an EV plugged in for the whole step"
            v2g = [h for h in plugged if f.ev.params.max_discharge_kw[h] > 4.0]
            ev = fleet.slot((v2g or plugged)[0], EV)
            ev_kw = -4.0 if v2g else 3.0  # V2G discharge over OCPP 2.1 where the charger can, else a charge cap
            e_ev = float(f.ev.energy_kwh[ev.home])
            wh = fleet.slot(own[WATER_HEATER][0], WATER_HEATER)
            th = fleet.slot(own[THERMOSTAT][0], THERMOSTAT)
            commands = {
                bat: PowerCommand(env(bat), bat_kw, -2.0, 2.0),
                ev: PowerCommand(env(ev), ev_kw, -11.0, 11.0),
                wh: WaterHeaterCommand(env(wh), CtaEvent.SHED, 1200),  # CTA duration byte 24: 1152 s > 900 s
                th: ThermostatCommand(env(th), -2.0, 3.0),
            }
            acks = await asyncio.gather(*(fleet.links[s].send(c, TIMEOUT) for s, c in commands.items()))
            assert all(a.accepted for a in acks), acks
            assert [a.command_id for a in acks] == [c.envelope.command_id for c in commands.values()]

            await fleet.step(dt)
            assert fleet.clock() == pytest.approx(now + dt)
            tel = await read_all(fleet)

            # battery: E' = E + P dt / eta_d (P < 0)
            p = f.battery.params
            e_bat1 = e_bat + bat_kw * dt_h / float(p.discharge_efficiency[bat.home])
            assert fleet.device(bat).energy_kwh == pytest.approx(e_bat1, abs=1e-9)
            cap = float(p.capacity_kwh[bat.home])
            assert tel[bat].state["soc_kwh"] == pytest.approx(e_bat1, abs=cap * 5e-5 + 5e-4)
            assert tel[bat].power_kw == pytest.approx(bat_kw)  # WSet still on: its 1200 s timer has 300 s left
            # EV: one efficiency both ways
            eta = float(f.ev.params.efficiency[ev.home])
            e_ev1 = e_ev + (ev_kw / eta if ev_kw < 0 else ev_kw * eta) * dt_h
            assert tel[ev].state["soc_kwh"] == pytest.approx(e_ev1, abs=1e-6)
            assert tel[ev].power_kw == pytest.approx(ev_kw) and tel[ev].state["connected"] == 1.0
            # tank shed: element off (the tank stays above its comfort floor), draw mixing then standby loss
            q = f.water_heater.params
            i = wh.home
            t0, vol = float(f.water_heater.temp_c[i]), float(q.volume_l[i])
            t1 = t0 - min(float(draws[i]) / vol, 1.0) * (t0 - float(q.inlet_c[i]))
            t2 = t1 - float(q.ua_kw_per_c[i]) * (t1 - float(q.ambient_c[i])) * dt_h / (vol * 4.186 / 3600.0)
            assert t2 > float(q.comfort_low_c[i])  # so shed keeps the element off all step
            assert fleet.device(wh).temp_c == pytest.approx(t2, abs=1e-9)
            assert tel[wh].state["temp_c"] == round(t2) and tel[wh].power_kw == 0.0
            # thermostat: setpoint 22 - 2 = 20 degC; exact RC step, own control toward it within [0, rated]
            r = f.thermostat.params
            i = th.home
            big_r, big_c = float(r.resistance_c_per_kw[i]), float(r.capacitance_kwh_per_c[i])
            t_out, ghi = float(grid[0]), float(grid[1])
            a = math.exp(-dt_h / (big_r * big_c))
            gains = float(r.internal_gain_kw[i]) + float(r.solar_aperture_m2[i]) * ghi / 1000.0
            free = a * float(f.thermostat.temp_c[i]) + (1 - a) * (t_out + big_r * gains)
            heating = t_out < float(r.balance_temp_c[i])
            gain = (1 - a) * big_r * (cop_heating(t_out) if heating else -cop_cooling(t_out))
            setpoint = 0.5 * float(r.comfort_low_c[i] + r.comfort_high_c[i]) - 2.0
            power = min(max((setpoint - free) / gain, 0.0), float(r.heat_pump_kw[i]))
            assert tel[th].state["setpoint_c"] == pytest.approx(setpoint)
            assert tel[th].state["temp_c"] == pytest.approx(free + gain * power, abs=1e-6)
            assert tel[th].power_kw == pytest.approx(power, abs=1e-6)
            assert abs(tel[th].measured_at - fleet.clock()) < 1e-3

            # an event that ends inside the next step: +1 degC for 300 s, then the occupant's 22 degC for 600 s
            now1 = fleet.clock()
            cmd = ThermostatCommand(Envelope(f"{th.device_id}:2", th.device_id, now1, now1 + 300.0), 1.0, 3.0)
            assert (await fleet.links[th].send(cmd, TIMEOUT)).accepted
            grid1 = f.grid_at(k0 + 1)
            t_out, ghi = float(grid1[0]), float(grid1[1])
            gains = float(r.internal_gain_kw[i]) + float(r.solar_aperture_m2[i]) * ghi / 1000.0
            cop = cop_heating(t_out) if t_out < float(r.balance_temp_c[i]) else -cop_cooling(t_out)
            temp = free + gain * power
            for seconds, target in ((300.0, setpoint + 3.0), (600.0, setpoint + 2.0)):
                a = math.exp(-seconds / 3600.0 / (big_r * big_c))
                free_k = a * temp + (1 - a) * (t_out + big_r * gains)
                gain_k = (1 - a) * big_r * cop
                temp = free_k + gain_k * min(max((target - free_k) / gain_k, 0.0), float(r.heat_pump_kw[i]))
            await fleet.step(dt)
            assert fleet.device(th).temp_c == pytest.approx(temp, abs=1e-6)
            assert (await fleet.links[th].read(TIMEOUT)).state["setpoint_c"] == pytest.approx(setpoint + 2.0)
            assert fleet.delivery_errors == []
        finally:
            await fleet.close()

    run(scenario())


# ----- the exogenous drivers: the simulated world tracks the twin left to its own control ------------------
def test_world_tracks_the_twin_under_own_control_through_draws_weather_and_departures(tmp_path: Path) -> None:
    twin = make_twin()
    f = twin.fleet
    own = owners(twin)
    steps = 32  # 00:00 to 08:00 of day 100: morning draws, and the three plugged EVs leave (6.5 to 8 h)
    departures = [h for h in own[EV] if f.ev.connected[h] and f.ev.hours_to_departure[h] <= steps * 0.25]
    assert departures, "an EV leaves inside the window"

    async def scenario() -> None:
        fleet = await start_simulated_fleet(twin, start_time=time.time(), tmp_dir=tmp_path)
        try:
            zero = np.zeros(twin.action_space.shape, np.float32)
            drawn = 0.0
            for _ in range(steps):
                drawn += float(f.scaled_inputs(f.t)["dhw_draw_l"][own[WATER_HEATER]].sum())
                twin.step(zero)
                await fleet.step(900.0)
                assert fleet.step_index == f.t
                for h in own[BATTERY]:
                    assert fleet.device(fleet.slot(h, BATTERY)).energy_kwh == pytest.approx(
                        float(f.battery.energy_kwh[h]), abs=1e-5)
                for h in own[WATER_HEATER]:
                    assert fleet.device(fleet.slot(h, WATER_HEATER)).temp_c == pytest.approx(
                        float(f.water_heater.temp_c[h]), abs=2e-3)
                for h in own[THERMOSTAT]:
                    assert fleet.device(fleet.slot(h, THERMOSTAT)).temp_c == pytest.approx(
                        float(f.thermostat.temp_c[h]), abs=2e-3)
                for h in own[EV]:
                    cp = fleet.device(fleet.slot(h, EV))
                    assert cp.plugged == bool(f.ev.connected[h])
                    if cp.plugged:
                        assert cp.energy_kwh == pytest.approx(float(f.ev.energy_kwh[h]), abs=1e-3)
            assert drawn > 0.0, "the window holds hot-water draws"
            tel = await read_all(fleet)
            for h in departures:
                assert tel[fleet.slot(h, EV)].state["connected"] == 0.0
            for h in own[THERMOSTAT]:
                assert tel[fleet.slot(h, THERMOSTAT)].state["temp_c"] == pytest.approx(
                    float(f.thermostat.temp_c[h]), abs=2e-3)
            assert fleet.delivery_errors == []
        finally:
            await fleet.close()

    run(scenario())


# ----- security: exactly the simulators on the allow list, authenticated chargers, mutual TLS ------------
def test_security_allow_list_charger_password_and_mutual_tls(tmp_path: Path) -> None:
    twin = make_twin()

    async def scenario() -> None:
        fleet = await start_simulated_fleet(twin, start_time=time.time(), tmp_dir=tmp_path)
        try:
            batteries = fleet.slots(BATTERY)
            bound = {tuple(fleet.device(s).address) for s in batteries}
            assert fleet.modbus_allow is not None and fleet.modbus_allow.pairs == bound
            host, port = next(iter(bound))
            with pytest.raises(AddressNotAllowed, match="not on the allow list"):
                SunSpecLink("x", host, port + 1 if (host, port + 1) not in bound else port + 2,
                            allow=fleet.modbus_allow)

            # a charger with the right identity but a wrong password: HTTP 401 at the handshake
            csms = fleet.csms
            assert csms is not None and csms.security.profile == 2
            cid = "home0-ev"
            intruder = SimulatedChargePoint(ChargePointSpec(cid), start_time=fleet.clock())
            with pytest.raises(ConnectionRefusedError, match="HTTP 401"):
                await intruder.connect(csms.url(cid), ssl_context=client_ssl_context(tmp_path / "ocpp" / "ca.pem"),
                                       password="not-the-password-0123")
            assert (cid, 401) in csms.refused
            # plain TLS without a client certificate: the VTN answers no HTTP request
            vtn = fleet.vtn
            assert vtn is not None
            ctx = ssl.create_default_context(cafile=str(tmp_path / "openadr" / "ca.pem"))
            answer = b""
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(vtn.config.host, int(vtn.url.split(":")[2].split("/")[0]), ssl=ctx),
                    TIMEOUT)
                try:
                    writer.write(b"GET /OpenADR2/Simple/2.0b/EiRegisterParty HTTP/1.1\r\nHost: x\r\n\r\n")
                    await writer.drain()
                    answer = await asyncio.wait_for(reader.read(100), TIMEOUT)
                finally:
                    writer.close()
                    try:
                        await asyncio.wait_for(writer.wait_closed(), TIMEOUT)
                    except (OSError, ssl.SSLError):
                        pass
            except (OSError, ssl.SSLError):
                pass
            assert not answer.startswith(b"HTTP")
        finally:
            await fleet.close()

    run(scenario())


# ----- eight full homes: start-up time, fault injection, a clean close ---------------------------------
def test_eight_full_homes_start_fast_survive_faults_and_close_clean(tmp_path: Path) -> None:
    twin = make_twin(num_homes=8, seed=0, ownership=Ownership(battery=1, ev=1, pv=0, water_heater=1,
                                                              thermostat=1))
    leftover: list[asyncio.Task] = []

    async def scenario() -> None:
        t0 = time.perf_counter()
        fleet = await start_simulated_fleet(twin, start_time=time.time(), tmp_dir=tmp_path)
        try:
            assert len(fleet.links) == 32
            assert time.perf_counter() - t0 < 8.0
            muted = fleet.slot(1, WATER_HEATER)
            stopped = fleet.slot(2, THERMOSTAT)
            stale = fleet.slot(3, EV)
            quiet_bat = fleet.slot(4, BATTERY)
            before_stale = await fleet.links[stale].read(TIMEOUT)
            fleet.device(muted).mute = True
            await fleet.device(stopped).stop()
            fleet.set_stale(stale)
            await fleet.device(quiet_bat).stop()
            with pytest.raises(ValueError, match="polls this device"):
                fleet.set_stale(muted)
            temps = (fleet.device(muted).temp_c, fleet.device(stopped).now)
            await fleet.step(900.0)
            # physics ran for every device, faulted or not
            assert fleet.device(stopped).now == pytest.approx(temps[1] + 900.0)
            assert fleet.device(stale).clock == pytest.approx(fleet.clock())
            with pytest.raises(TimeoutError):
                await fleet.links[muted].read(0.3)
            with pytest.raises(ConnectionError):
                await fleet.links[quiet_bat].read(1.0)
            assert (await fleet.links[stale].read(TIMEOUT)).measured_at == before_stale.measured_at
            fresh = await fleet.links[fleet.slot(0, EV)].read(TIMEOUT)
            assert fresh.measured_at == pytest.approx(fleet.clock(), abs=2e-3)
        finally:
            t1 = time.perf_counter()
            await fleet.close()
            assert time.perf_counter() - t1 < 5.0
        leftover.extend(t for t in asyncio.all_tasks()  # all but this scenario and run()'s wait_for around it
                        if t is not asyncio.current_task() and t.get_coro().__name__ != "wait_for")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(scenario())
        gc.collect()
    assert leftover == []
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


# ----- bad input -----------------------------------------------------------------------------------------
def test_bad_input_names_the_field_and_range(tmp_path: Path) -> None:
    twin = make_twin()

    async def scenario() -> None:
        with pytest.raises(ValueError, match=r"classes = \(5,\) must be distinct device classes among .*FLEX"):
            await start_simulated_fleet(twin, start_time=time.time(), classes=(FLEX,), tmp_dir=tmp_path)
        with pytest.raises(ValueError, match=r"start_time = nan is outside the allowed range \[0, 1e11\]"):
            await start_simulated_fleet(twin, start_time=math.nan, classes=(BATTERY,), tmp_dir=tmp_path)
        with pytest.raises(ValueError, match="start_time = 1000.0 is more than 60 s before the wall clock"):
            await start_simulated_fleet(twin, start_time=1000.0, tmp_dir=tmp_path)
        fleet = await start_simulated_fleet(twin, start_time=1000.0, classes=(BATTERY,), tmp_dir=tmp_path)
        try:
            for bad in (0.0, -5.0, math.inf, math.nan):
                with pytest.raises(ValueError, match=r"dt_s = .* is outside the allowed range \(0, 604800\]"):
                    await fleet.step(bad)
            twin.set_start_day(101)
            twin.reset(seed=0)
            with pytest.raises(RuntimeError, match="twin was reset"):
                await fleet.step(60.0)
        finally:
            await fleet.close()

    run(scenario())
