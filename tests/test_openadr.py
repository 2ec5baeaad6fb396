"""OpenADR 2.0b over loopback: the VPP's openleadr VTN and simulated openleadr VENs really talking (mutual
TLS + signed XML), commands as events, opt responses as acks, reports as telemetry, env physics behind.

References the code under test does not compute: hand-worked flexible-load bookkeeping (flex_load.py's
equations done by hand), the exact solution of the RC ODE T(t) = T_out + (T0 - T_out) e^(-t/RC) for the
thermostat, and the XML on the wire read with lxml, not with openleadr's parser.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from functools import partial

import pytest
from lxml import etree
from openleadr.messaging import create_message
from vpprl.deployment.commands import CommandError, Envelope, PowerCommand, ThermostatCommand
from vpprl.deployment.protocols.openadr_certs import CertPair, TestPki
from vpprl.deployment.protocols.openadr_vtn import (
    OpenAdrVtn,
    VtnConfig,
    encode_command,
    event_id_for,
    scaled_value,
)
from vpprl.deployment.simulators.openadr_ven import (
    FlexLoadVen,
    HomeParams,
    SiteParams,
    ThermostatVen,
    VenCredentials,
)

POLL_S = 0.2  # the simulated VENs poll this often (the VTN asks for 1 s, the shortest OpenADR duration)
WAIT_S = 5.0  # bound on every network wait
SITE = SiteParams(baseline_kw=100.0, max_curtail_fraction=0.3, max_rebound_kw=20.0, max_backlog_kwh=50.0)
HOME = HomeParams(resistance_c_per_kw=2.0, capacitance_kwh_per_c=3.0, heat_pump_kw=5.0, comfort_low_c=18.0,
                  comfort_high_c=24.0, occupant_setpoint_c=21.0, initial_temp_c=21.0)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    pki = TestPki(tmp_path_factory.mktemp("pki"))
    for name in ("site-1", "thermo-1", "stranger", "site-1-other"):
        pki.issue(name)
    return pki


def pair(pki: TestPki, name: str) -> CertPair:
    return CertPair(pki.directory / f"{name}.crt", pki.directory / f"{name}.key")


def credentials(pki: TestPki, ven_id: str, ven_name: str, cert: str) -> VenCredentials:
    c = pair(pki, cert)
    return VenCredentials(ven_id, ven_name, c.cert_path, c.key_path, pki.ca_path, pki.vtn.fingerprint())


def make_vtn(pki: TestPki) -> OpenAdrVtn:
    """A VTN with the site and the thermostat enrolled by their certificate fingerprints."""
    vtn = OpenAdrVtn(VtnConfig(vtn_id="VPP-VTN", cert_path=pki.vtn.cert_path, key_path=pki.vtn.key_path,
                               ca_path=pki.ca_path, poll_interval_s=1, report_interval_s=60))
    vtn.enroll_ven("ven-site-1", "site-1", pair(pki, "site-1").fingerprint())
    vtn.enroll_ven("ven-thermo-1", "thermo-1", pair(pki, "thermo-1").fingerprint())
    return vtn


class WireMixin:
    """Keeps every XML message the VEN receives, to read the encoding as sent."""

    def make_client(self):
        client = super().make_client()  # type: ignore[misc]
        self.received_xml: list[str] = []
        client.add_hook("after_receive_xml", self.received_xml.append)
        return client

    def distributed_events(self) -> list[etree._Element]:
        events = []
        for xml in self.received_xml:
            if "oadrDistributeEvent" in xml:
                events += etree.fromstring(xml.encode()).xpath("//*[local-name()='oadrEvent']")
        return events


class WireSite(WireMixin, FlexLoadVen):
    pass


class WireThermostat(WireMixin, ThermostatVen):
    pass


def text(node: etree._Element, name: str) -> str:
    return node.xpath(f".//*[local-name()='{name}']/text()")[0]


def run(scenario, limit_s: float = 30.0) -> None:
    asyncio.run(asyncio.wait_for(scenario(), limit_s))


def site_command(cid: str, t0: float, kw: float, valid_s: float = 1800.0) -> PowerCommand:
    return PowerCommand(Envelope(cid, "site-1", t0, t0 + valid_s), setpoint_kw=kw, min_kw=0.0, max_kw=150.0)


def thermo_command(cid: str, t0: float, offset: float, valid_s: float = 1800.0) -> ThermostatCommand:
    return ThermostatCommand(Envelope(cid, "thermo-1", t0, t0 + valid_s), offset_c=offset, max_abs_offset_c=3.0)


def test_site_setpoint_applied_reported_and_reverted_at_event_end(pki: TestPki) -> None:
    async def scenario() -> None:
        async with make_vtn(pki) as vtn:
            link = vtn.add_resource("ven-site-1", "site-1", "site")
            t0 = time.time()
            ven = WireSite("site-1", vtn.url, credentials(pki, "ven-site-1", "site-1", "site-1"), SITE, t0=t0,
                           poll_interval_s=POLL_S)
            await ven.start(WAIT_S)
            try:
                ack = await link.send(site_command("site-1:0", t0, 80.0), WAIT_S)
                assert ack.accepted and ack.command_id == "site-1:0"

                # on the wire: LOAD_DISPATCH / setpoint, 80 in W x 10^3, one 30-minute interval from issued_at
                (event,) = ven.distributed_events()
                assert text(event, "eventID") == event_id_for("site-1:0")
                assert (text(event, "signalName"), text(event, "signalType")) == ("LOAD_DISPATCH", "setpoint")
                assert float(text(event, "value")) == 80.0
                assert (text(event, "itemUnits"), text(event, "siScaleCode")) == ("W", "k")
                assert text(event, "duration") == "PT30M"

                # by hand (flex_load.py): baseline 100 kW, feasible [70, 120]; 80 kW for 0.25 h owes 5 kWh
                ven.step(900.0)
                await ven.report_now(WAIT_S)
                tel = await link.read_newer_than(t0 + 1.0, WAIT_S)  # after the initial state
                assert tel.power_kw == pytest.approx(80.0)
                assert tel.state["backlog_kwh"] == pytest.approx(5.0)
                assert tel.measured_at == pytest.approx(t0 + 900.0, abs=1e-5)  # the VEN's own clock

                ven.step(900.0)  # still inside the event: another 5 kWh owed
                # at t0 + 1800 the event has ended: own control repays the backlog at the 20 kW rebound cap
                ven.step(900.0)
                await ven.report_now(WAIT_S)
                tel = await link.read_newer_than(tel.measured_at, WAIT_S)
                assert tel.measured_at == pytest.approx(t0 + 2700.0, abs=1e-5)
                assert tel.power_kw == pytest.approx(120.0)
                assert tel.state["backlog_kwh"] == pytest.approx(10.0 - 20.0 * 0.25)
            finally:
                await ven.stop()

    run(scenario)


def test_thermostat_offset_moves_indoor_temperature_then_reverts(pki: TestPki) -> None:
    async def scenario() -> None:
        async with make_vtn(pki) as vtn:
            link = vtn.add_resource("ven-thermo-1", "thermo-1", "thermostat")
            t0 = time.time()
            ven = WireThermostat("thermo-1", vtn.url, credentials(pki, "ven-thermo-1", "thermo-1", "thermo-1"),
                                 HOME, t0=t0, poll_interval_s=POLL_S)
            ven.outdoor_c = 0.0
            await ven.start(WAIT_S)
            try:
                ack = await link.send(thermo_command("thermo-1:0", t0, -2.0), WAIT_S)
                assert ack.accepted
                (event,) = ven.distributed_events()
                assert (text(event, "signalName"), text(event, "signalType")) == \
                    ("LOAD_CONTROL", "x-loadControlLevelOffset")
                assert float(text(event, "value")) == -20.0  # tenths of a degree ...
                assert (text(event, "itemUnits"), text(event, "siScaleCode")) == ("celsius", "d")  # ... of degC

                # setback to 19 degC: the home cools freely (heat pump off) for 0.5 h, tau = RC = 6 h
                ven.step(1800.0)
                await ven.report_now(WAIT_S)
                tel = await link.read_newer_than(t0 + 1.0, WAIT_S)  # after the initial state
                a = math.exp(-0.5 / 6.0)
                t1 = 0.0 + (21.0 - 0.0) * a
                assert tel.state["setpoint_c"] == pytest.approx(19.0)
                assert tel.power_kw == pytest.approx(0.0)
                assert tel.state["temp_c"] == pytest.approx(t1, abs=1e-9)

                # the event has ended at t0 + 1800: back to 21 degC, which needs more than the 5 kW heat pump,
                # so it heats flat out: T2 = a T1 + (1 - a) R COP P, COP(0 degC) = 3.0 - 0.06 * 7
                ven.step(1800.0)
                await ven.report_now(WAIT_S)
                tel = await link.read_newer_than(tel.measured_at, WAIT_S)
                assert tel.measured_at == pytest.approx(t0 + 3600.0, abs=1e-5)
                t2 = a * t1 + (1.0 - a) * 2.0 * (3.0 - 0.06 * 7.0) * 5.0
                assert tel.state["setpoint_c"] == pytest.approx(21.0)
                assert tel.power_kw == pytest.approx(5.0)
                assert tel.state["temp_c"] == pytest.approx(t2, abs=1e-9)
            finally:
                await ven.stop()

    run(scenario)


def test_same_command_id_twice_is_one_event(pki: TestPki) -> None:
    async def scenario() -> None:
        async with make_vtn(pki) as vtn:
            link = vtn.add_resource("ven-site-1", "site-1", "site")
            t0 = time.time()
            ven = WireSite("site-1", vtn.url, credentials(pki, "ven-site-1", "site-1", "site-1"), SITE, t0=t0,
                           poll_interval_s=POLL_S)
            await ven.start(WAIT_S)
            try:
                command = site_command("site-1:7", t0, 85.0)
                first, again = await asyncio.gather(link.send(command, WAIT_S), link.send(command, WAIT_S))
                third = await link.send(command, WAIT_S)
                assert first == again == third and first.accepted
                await asyncio.sleep(5 * POLL_S)  # several more polls: nothing new may arrive
                ids = [text(e, "eventID") for e in ven.distributed_events()]
                assert ids == [event_id_for("site-1:7")]
                assert ven.events_seen == [event_id_for("site-1:7")]
                with pytest.raises(CommandError, match="command_id"):
                    await link.send(site_command("site-1:7", t0, 90.0), WAIT_S)  # same id, other content
            finally:
                await ven.stop()

    run(scenario)


def test_new_command_supersedes_previous_event(pki: TestPki) -> None:
    async def scenario() -> None:
        async with make_vtn(pki) as vtn:
            link = vtn.add_resource("ven-site-1", "site-1", "site")
            t0 = time.time()
            ven = WireSite("site-1", vtn.url, credentials(pki, "ven-site-1", "site-1", "site-1"), SITE, t0=t0,
                           poll_interval_s=POLL_S)
            await ven.start(WAIT_S)
            try:
                assert (await link.send(site_command("site-1:1", t0, 80.0), WAIT_S)).accepted
                assert (await link.send(site_command("site-1:2", t0, 90.0), WAIT_S)).accepted
                seen = [(text(e, "eventID"), text(e, "modificationNumber"), text(e, "eventStatus"))
                        for e in ven.distributed_events()]
                old, new = event_id_for("site-1:1"), event_id_for("site-1:2")
                assert (old, "0", "active") in seen
                assert (old, "1", "cancelled") in seen  # a change to an event bumps its modificationNumber
                assert (new, "0", "active") in seen
                ven.step(900.0)
                assert ven.power_kw == pytest.approx(90.0)
            finally:
                await ven.stop()

    run(scenario)


def test_thermostat_opt_out_is_a_refused_ack(pki: TestPki) -> None:
    async def scenario() -> None:
        async with make_vtn(pki) as vtn:
            link = vtn.add_resource("ven-thermo-1", "thermo-1", "thermostat")
            t0 = time.time()
            ven = ThermostatVen("thermo-1", vtn.url, credentials(pki, "ven-thermo-1", "thermo-1", "thermo-1"),
                                HOME, t0=t0, poll_interval_s=POLL_S)
            ven.occupant_override = True
            await ven.start(WAIT_S)
            try:
                ack = await link.send(thermo_command("thermo-1:0", t0, 2.0), WAIT_S)
                assert not ack.accepted and "optOut" in ack.reason
                ven.step(600.0)
                assert ven.setpoint_c == 21.0  # not applied
            finally:
                await ven.stop()

    run(scenario)


def test_unknown_ven_is_refused(pki: TestPki) -> None:
    async def scenario() -> None:
        async with make_vtn(pki) as vtn:
            ven = FlexLoadVen("site-9", vtn.url, credentials(pki, "ven-site-9", "stranger", "stranger"), SITE)
            with pytest.raises(ConnectionRefusedError, match="not known"):
                await ven.start(WAIT_S)
            assert not vtn.is_registered("ven-site-9")

    run(scenario)


def test_enrolled_ven_id_with_another_certificate_is_refused(pki: TestPki) -> None:
    async def scenario() -> None:
        async with make_vtn(pki) as vtn:
            ven = FlexLoadVen("site-1", vtn.url, credentials(pki, "ven-site-1", "site-1", "site-1-other"), SITE)
            with pytest.raises(ConnectionRefusedError, match="HTTPS certificate"):
                await ven.start(WAIT_S)
            assert not vtn.is_registered("ven-site-1")

    run(scenario)


class WrongSigner(FlexLoadVen):
    """The enrolled TLS certificate, but XML signatures made with ``other``'s key (and, if ``embed_other``,
    carrying ``other``'s certificate too)."""

    other: CertPair
    embed_other: bool

    def make_client(self):
        client = super().make_client()
        cert = (self.other.cert_path if self.embed_other else self.credentials.cert_path).read_bytes()
        client._create_message = partial(create_message, cert=cert, key=self.other.key_path.read_bytes(),
                                         passphrase=None)
        return client


@pytest.mark.parametrize(("embed_other", "reason"), [(True, "certificate used to sign the message"),
                                                     (False, "Invalid Signature")])
def test_ven_signing_with_the_wrong_key_is_refused(pki: TestPki, embed_other: bool, reason: str) -> None:
    async def scenario() -> None:
        async with make_vtn(pki) as vtn:
            ven = WrongSigner("site-1", vtn.url, credentials(pki, "ven-site-1", "site-1", "site-1"), SITE)
            ven.other, ven.embed_other = pair(pki, "site-1-other"), embed_other
            with pytest.raises(ConnectionRefusedError, match=reason):
                await ven.start(WAIT_S)
            assert not vtn.is_registered("ven-site-1")

    run(scenario)


def test_unanswered_command_times_out(pki: TestPki) -> None:
    async def scenario() -> None:
        async with make_vtn(pki) as vtn:
            link = vtn.add_resource("ven-site-1", "site-1", "site")
            with pytest.raises(ConnectionError):  # never registered
                await link.send(site_command("site-1:0", time.time(), 80.0), WAIT_S)
            ven = FlexLoadVen("site-1", vtn.url, credentials(pki, "ven-site-1", "site-1", "site-1"), SITE,
                              poll_interval_s=POLL_S)
            await ven.start(WAIT_S)
            await ven.stop()  # registered, then silent
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await link.send(site_command("site-1:1", time.time(), 80.0), 0.5)
            with pytest.raises(TimeoutError):
                await link.read(0.3)  # nothing reported yet
            assert time.monotonic() - started < 2.0

    run(scenario)


def test_deregistered_ven_cannot_be_commanded(pki: TestPki) -> None:
    async def scenario() -> None:
        async with make_vtn(pki) as vtn:
            link = vtn.add_resource("ven-site-1", "site-1", "site")
            ven = FlexLoadVen("site-1", vtn.url, credentials(pki, "ven-site-1", "site-1", "site-1"), SITE,
                              poll_interval_s=POLL_S)
            await ven.start(WAIT_S)
            try:
                assert vtn.is_registered("ven-site-1")
                await asyncio.wait_for(ven.client.cancel_party_registration(), WAIT_S)
                assert ven.client.registration_id is None  # the VEN saw oadrCanceledPartyRegistration, 200
                assert not vtn.is_registered("ven-site-1")
                with pytest.raises(ConnectionError):
                    await link.send(site_command("site-1:0", time.time(), 80.0), WAIT_S)
            finally:
                await ven.stop()

    run(scenario)


def test_bad_commands_are_refused_before_sending(pki: TestPki) -> None:
    async def scenario() -> None:
        vtn = make_vtn(pki)  # not even started: nothing reaches the network
        site = vtn.add_resource("ven-site-1", "site-1", "site")
        thermo = vtn.add_resource("ven-thermo-1", "thermo-1", "thermostat")
        now = time.time()
        with pytest.raises(CommandError, match="setpoint_kw"):
            await site.send(site_command("a", now, math.nan), WAIT_S)
        with pytest.raises(CommandError, match="setpoint_kw.*0.0, 150.0"):
            await site.send(site_command("b", now, 151.0), WAIT_S)
        with pytest.raises(CommandError, match="expired"):
            await site.send(site_command("c", now - 100.0, 80.0, valid_s=50.0), WAIT_S)
        with pytest.raises(CommandError, match=r"valid_until - issued_at.*\[1, inf\)"):
            await site.send(site_command("d", now, 80.0, valid_s=0.5), WAIT_S)
        with pytest.raises(CommandError, match="offset_c.*-3.0, 3.0"):
            await thermo.send(thermo_command("e", now, 3.5), WAIT_S)
        with pytest.raises(CommandError, match="accepts ThermostatCommand"):
            await thermo.send(site_command("f", now, 80.0), WAIT_S)
        with pytest.raises(CommandError, match="device"):
            await site.send(PowerCommand(Envelope("g", "site-2", now, now + 60), 80.0, 0.0, 150.0), WAIT_S)
        with pytest.raises(CommandError, match="timeout_s"):
            await site.send(site_command("h", now, 80.0), math.inf)

    run(scenario)


def test_offset_travels_as_whole_tenths_of_a_degree() -> None:
    now = time.time()
    event = encode_command(thermo_command("x", now, 1.5), "ven-thermo-1", now)
    (signal,) = event.event_signals
    assert signal.intervals[0].signal_payload == 15.0  # an integer level, as x-loadControlLevelOffset wants
    assert signal.measurement.scale == "d" and scaled_value(15.0, "d") == 1.5  # decodes exactly
    assert signal.intervals[0].duration.total_seconds() == 1800.0


def test_config_from_env_with_encrypted_key_never_logs_the_passphrase(
        pki: TestPki, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    secret = "correct-horse-battery-staple"
    server = pki.issue("vtn-locked", host="127.0.0.1", passphrase=secret)
    env = {"VPP_OADR_VTN_ID": "VPP-VTN", "VPP_OADR_VTN_CERT": str(server.cert_path),
           "VPP_OADR_VTN_KEY": str(server.key_path), "VPP_OADR_CA": str(pki.ca_path),
           "VPP_OADR_VTN_KEY_PASSPHRASE": secret, "VPP_OADR_PORT": "0"}
    config = VtnConfig.from_env(env, poll_interval_s=1)
    assert config.key_passphrase == secret and secret not in repr(config)
    with pytest.raises(CommandError, match="VPP_OADR_VTN_KEY"):
        VtnConfig.from_env({k: v for k, v in env.items() if k != "VPP_OADR_VTN_KEY"})
    with pytest.raises(CommandError, match=r"poll_interval_s = 0 .*\[1, 86400\]"):
        OpenAdrVtn(VtnConfig.from_env(env, poll_interval_s=0))

    async def scenario() -> None:
        vtn = OpenAdrVtn(config)
        vtn.enroll_ven("ven-site-1", "site-1", pair(pki, "site-1").fingerprint())
        async with vtn:
            creds = VenCredentials("ven-site-1", "site-1", pair(pki, "site-1").cert_path,
                                   pair(pki, "site-1").key_path, pki.ca_path, server.fingerprint())
            ven = FlexLoadVen("site-1", vtn.url, creds, SITE, poll_interval_s=POLL_S)
            await ven.start(WAIT_S)  # TLS and signatures with the encrypted key work end to end
            await ven.stop()
            assert vtn.is_registered("ven-site-1")

    with caplog.at_level(logging.DEBUG):
        run(scenario)
    captured = capsys.readouterr()
    assert secret not in caplog.text and secret not in captured.out and secret not in captured.err
