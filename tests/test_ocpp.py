"""EV chargers over OCPP on loopback: the VPP's CSMS against simulated charge points (real ocpp + TLS).

References the code under test did not compute: hand-worked energies (AC kW x hours x efficiency into the
battery, / efficiency out of it), hand-written OCPP payloads, the OCA JSON schemas shipped in the ``ocpp``
package (the library's validator is the judge), and OpenSSL's certificate verification.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from ocpp.exceptions import FormatViolationError, OCPPError, TypeConstraintViolationError
from ocpp.messages import Call, MessageType, get_validator
from vpprl.deployment.commands import (
    CommandError,
    CtaEvent,
    Envelope,
    PowerCommand,
    WaterHeaterCommand,
)
from vpprl.deployment.protocols.ocpp_csms import (
    Csms,
    CsmsSecurity,
    OcppVersionError,
    PasswordStore,
    RateLimit,
    check_against_schema,
    encode_set_charging_profile,
    profile_id_for,
    server_ssl_context,
)
from vpprl.deployment.simulators.charge_point import ChargePointSpec, SimulatedChargePoint
from vpprl.deployment.tls_testing import CertFiles, CertificateAuthority, client_ssl_context

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
PASSWORD = "correct-horse-battery-9"  # 23 characters: inside OCPP's 16..40
TIMEOUT = 20.0  # no scenario may take longer than this, whatever goes wrong

# The EV of every scenario: 60 kWh at 50 % (30 kWh), target 90 % (54 kWh: never reached in these tests),
# an 11 kW charger at efficiency 0.9; V2G chargers may export 7 kW.
E0 = 30.0


@dataclass(frozen=True)
class Pki:
    ca: Path
    server: CertFiles
    client: CertFiles  # CN cp-3, signed by the VPP's CA
    client_wrong_cn: CertFiles  # CN cp-9, signed by the VPP's CA
    rogue_client: CertFiles  # CN cp-3, signed by another CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    vpp, rogue = CertificateAuthority("VPP root"), CertificateAuthority("Rogue root")
    return Pki(ca=vpp.write_ca(d), server=vpp.write_leaf(d, "csms", "csms.local", server=True),
               client=vpp.write_leaf(d, "cp3", "cp-3", server=False),
               client_wrong_cn=vpp.write_leaf(d, "cp9", "cp-9", server=False),
               rogue_client=rogue.write_leaf(d, "rogue", "cp-3", server=False))


def profile2(pki: Pki) -> CsmsSecurity:
    return CsmsSecurity(2, server_ssl_context(pki.server.cert, pki.server.key), PasswordStore(shared=PASSWORD))


def profile3(pki: Pki) -> CsmsSecurity:
    return CsmsSecurity(3, server_ssl_context(pki.server.cert, pki.server.key, client_ca=pki.ca))


def cmd(n: int, kw: float, *, issued: float = T0, valid_s: float = 3600.0, lo: float = -11.0, hi: float = 11.0,
        device: str = "cp-1") -> PowerCommand:
    return PowerCommand(Envelope(f"{device}:{n}", device, issued, issued + valid_s), kw, lo, hi)


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, TIMEOUT))


Scenario = Callable[[SimulatedChargePoint, Csms], Awaitable[None]]


def with_charger(pki: Pki, spec: ChargePointSpec, body: Scenario, *, plug: bool = True, **csms_kw: object) -> None:
    """A profile-2 CSMS on an ephemeral loopback port, one booted charge point, the EV plugged in."""
    async def scenario() -> None:
        sim = SimulatedChargePoint(spec, start_time=T0)
        csms = Csms(profile2(pki), clock=lambda: sim.clock, **csms_kw)  # type: ignore[arg-type]
        port = await csms.start()
        try:
            await sim.connect(f"wss://127.0.0.1:{port}/ocpp/{spec.charger_id}",
                              ssl_context=client_ssl_context(pki.ca), password=PASSWORD)
            if plug:
                await sim.plug_in(capacity_kwh=60.0, soc=0.5, target_soc=0.9)
            await body(sim, csms)
        finally:
            await sim.close()
            await csms.stop()
    run(scenario())


V1G_201 = ChargePointSpec("cp-1", "2.0.1", max_charge_kw=11.0, efficiency=0.9)
V2G_21 = ChargePointSpec("cp-1", "2.1", max_charge_kw=11.0, max_discharge_kw=7.0, efficiency=0.9)


# ------------------------------------------------------------------------------------------- encoder


def test_201_payload_is_the_hand_written_limit_profile_and_passes_the_oca_schema() -> None:
    payload = encode_set_charging_profile(cmd(1, 7.0), "2.0.1", now=T0, transaction_id="cp-1-1")
    pid = profile_id_for("cp-1:1")
    assert payload == {
        "evseId": 1,
        "chargingProfile": {
            "id": pid, "stackLevel": 0, "chargingProfilePurpose": "TxProfile", "chargingProfileKind": "Absolute",
            "validTo": "2023-11-14T23:13:20.000Z", "transactionId": "cp-1-1",
            "chargingSchedule": [{"id": pid, "startSchedule": "2023-11-14T22:13:20.000Z",
                                  "chargingRateUnit": "W",
                                  "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7000.0}]}],
            "customData": {"vendorId": "org.vpprl", "commandId": "cp-1:1"},
        },
    }
    for version in ("2.0.1", "2.1"):  # a plain limit is valid in both versions
        get_validator(MessageType.Call, "SetChargingProfile", version).validate(payload)
    # the profile id is the command's stable key: same id -> same profile, another id -> another profile
    assert profile_id_for("cp-1:1") == pid and profile_id_for("cp-1:2") != pid
    assert 0 <= pid < 2**31


def test_21_negative_setpoint_is_a_central_setpoint_with_offline_expiry_and_201_schema_refuses_it() -> None:
    payload = encode_set_charging_profile(cmd(2, -5.0, lo=-7.0, hi=11.0), "2.1", now=T0,
                                          transaction_id="cp-1-1", max_offline_s=600)
    profile = payload["chargingProfile"]
    assert profile["chargingSchedule"][0]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "operationMode": "CentralSetpoint", "setpoint": -5000.0, "dischargeLimit": -7000.0,
         "limit": 11000.0}]
    assert profile["maxOfflineDuration"] == 600 and profile["invalidAfterOfflineDuration"] is True
    assert profile["validTo"] == "2023-11-14T23:13:20.000Z"
    asyncio.run(check_against_schema(payload, "2.1"))  # the OCA 2.1 schema accepts it
    with pytest.raises(FormatViolationError):  # the 2.0.1 schema has no V2X fields: the library refuses
        asyncio.run(check_against_schema(payload, "2.0.1"))


@pytest.mark.parametrize(("command", "version", "now", "field"), [
    (cmd(1, math.nan), "2.1", T0, "setpoint_kw"),
    (cmd(1, 12.0), "2.1", T0, "setpoint_kw = 12.0 is outside the allowed range [-11.0, 11.0]"),
    (cmd(1, -12.0), "2.1", T0, "setpoint_kw"),
    (cmd(1, -3.0), "2.0.1", T0, "setpoint_kw = -3.0 is outside the allowed range [0, 11.0] for an OCPP 2.0.1"),
    (cmd(1, 3.0, valid_s=900.0), "2.1", T0 + 900.0, "valid_until"),
    (cmd(1, 3.0, lo=5.0, hi=4.0), "2.1", T0, "min_kw <= max_kw"),
    (WaterHeaterCommand(Envelope("w:1", "cp-1", T0, T0 + 60), CtaEvent.SHED, 60), "2.1", T0, "command"),
    (cmd(1, 3.0), "1.6", T0, "ocpp_version"),
])
def test_bad_commands_are_refused_before_encoding_naming_the_field(command: object, version: str, now: float,
                                                                    field: str) -> None:
    with pytest.raises(CommandError, match=field.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        encode_set_charging_profile(command, version, now=now, transaction_id="t")  # type: ignore[arg-type]


def test_v2x_on_201_is_a_version_error_and_max_offline_is_range_checked() -> None:
    with pytest.raises(OcppVersionError):
        encode_set_charging_profile(cmd(1, -1.0), "2.0.1", now=T0)
    with pytest.raises(CommandError, match=r"max_offline_s = 0 is outside the allowed range \[1, 86400\]"):
        encode_set_charging_profile(cmd(1, 1.0), "2.1", now=T0, max_offline_s=0)


# ------------------------------------------------------------------------------------ end to end


def test_201_limit_applied_and_visible_in_telemetry_after_a_step(pki: Pki) -> None:
    async def body(sim: SimulatedChargePoint, csms: Csms) -> None:
        link = csms.link("cp-1")
        first = await link.read(2.0)
        assert (first.measured_at, first.power_kw, first.state["soc_kwh"]) == (T0, 0.0, E0)
        ack = await link.send(cmd(1, 7.0), timeout_s=2.0)
        assert ack.accepted and ack.command_id == "cp-1:1"
        await sim.step(900.0)
        tel = await link.read(2.0)
        # 7 kW for 0.25 h = 1.75 kWh at the plug, x 0.9 = +1.575 kWh in the battery
        assert tel.power_kw == pytest.approx(7.0, abs=1e-9)
        assert tel.state["soc_kwh"] == pytest.approx(E0 + 1.575, abs=1e-9)
        assert tel.state["connected"] == 1.0
        assert tel.measured_at == pytest.approx(T0 + 900.0, abs=1e-3)  # the charger's own clock
        assert sim.import_wh == pytest.approx(1750.0)
    with_charger(pki, V1G_201, body)


def test_21_negative_setpoint_discharges_the_ev(pki: Pki) -> None:
    async def body(sim: SimulatedChargePoint, csms: Csms) -> None:
        link = csms.link("cp-1")
        ack = await link.send(cmd(1, -5.0, lo=-7.0), timeout_s=2.0)
        assert ack.accepted, ack.reason
        await sim.step(900.0)
        tel = await link.read(2.0)
        # 5 kW for 0.25 h = 1.25 kWh delivered at the plug, / 0.9 = 1.3889 kWh out of the battery
        assert tel.power_kw == pytest.approx(-5.0, abs=1e-9)
        assert tel.state["soc_kwh"] == pytest.approx(E0 - 1.25 / 0.9, abs=1e-9)
        assert sim.export_wh == pytest.approx(1250.0)
    with_charger(pki, V2G_21, body)


@pytest.mark.parametrize("steps", [(900.0, 900.0), (1800.0,)])
def test_expired_profile_reverts_to_full_power_own_charging(pki: Pki, steps: tuple[float, ...]) -> None:
    async def body(sim: SimulatedChargePoint, csms: Csms) -> None:
        link = csms.link("cp-1")
        assert (await link.send(cmd(1, 3.0, valid_s=900.0), timeout_s=2.0)).accepted
        for dt in steps:  # one long step is split at validTo: the same energy either way
            await sim.step(dt)
        tel = await link.read(2.0)
        # 3 kW x 0.25 h x 0.9 = 0.675 kWh until validTo, then its own 11 kW x 0.25 h x 0.9 = 2.475 kWh
        assert tel.state["soc_kwh"] == pytest.approx(E0 + 0.675 + 2.475, abs=1e-9)
        assert tel.power_kw == pytest.approx(11.0, abs=1e-9)
        assert sim.profile is None
    with_charger(pki, V1G_201, body)


def test_21_profile_lapses_max_offline_duration_after_the_csms_goes_silent(pki: Pki) -> None:
    async def body(sim: SimulatedChargePoint, csms: Csms) -> None:
        link = csms.link("cp-1")
        assert (await link.send(cmd(1, -5.0, lo=-7.0, valid_s=7200.0), timeout_s=2.0)).accepted
        await csms.stop()  # the VPP goes silent long before validTo
        await sim.wait_offline(5.0)
        with pytest.raises(ConnectionError, match="not connected"):  # and the loop is told, not left waiting
            await link.read(1.0)
        assert not sim.online and sim.offline_since == T0
        await sim.step(900.0)  # no CSMS to report to: the charger keeps going on its own
        # -5 kW for the 600 s of maxOfflineDuration (0.8333 kWh / 0.9 out), then its own 11 kW for 300 s
        # (0.9167 kWh x 0.9 in)
        assert sim.energy_kwh == pytest.approx(E0 - 5.0 * (600 / 3600) / 0.9 + 11.0 * (300 / 3600) * 0.9,
                                               abs=1e-9)
        assert sim.power_kw == pytest.approx(11.0) and sim.profile is None
    with_charger(pki, V2G_21, body, max_offline_s=600)


def test_replayed_command_id_is_applied_once_on_the_device(pki: Pki) -> None:
    async def body(sim: SimulatedChargePoint, csms: Csms) -> None:
        link = csms.link("cp-1")
        first, newer = cmd(1, 7.0), cmd(2, 3.0)
        assert (await link.send(first, 2.0)).accepted
        assert (await link.send(newer, 2.0)).accepted
        replay = await link.send(first, 2.0)  # a late resend of the old command
        assert replay.accepted and "Duplicate" in replay.reason
        assert sim.profiles_received == 3
        assert sim.applied_profile_ids == [profile_id_for("cp-1:1"), profile_id_for("cp-1:2")]
        await sim.step(900.0)
        # the newer 3 kW stays in force: 3 x 0.25 x 0.9 = 0.675 kWh (7 kW would have given 1.575)
        assert (await link.read(2.0)).state["soc_kwh"] == pytest.approx(E0 + 0.675, abs=1e-9)
    with_charger(pki, V1G_201, body)


def test_command_to_an_idle_charger_becomes_its_default_for_the_next_session(pki: Pki) -> None:
    async def body(sim: SimulatedChargePoint, csms: Csms) -> None:
        link = csms.link("cp-1")
        with pytest.raises(TimeoutError):  # booted, but nothing measured yet
            await link.read(0.2)
        await sim.step(0.0)  # a MeterValues report from the idle charger
        assert (await link.read(2.0)).state["connected"] == 0.0
        assert (await link.send(cmd(1, 2.0), 2.0)).accepted  # no transaction: a TxDefaultProfile
        assert sim.profile is not None and sim.profile.purpose == "TxDefaultProfile"
        await sim.plug_in(capacity_kwh=60.0, soc=0.5, target_soc=0.9)
        await sim.step(1800.0)
        tel = await link.read(2.0)
        assert tel.state["connected"] == 1.0
        assert tel.state["soc_kwh"] == pytest.approx(E0 + 2.0 * 0.5 * 0.9, abs=1e-9)  # 2 kW x 0.5 h x 0.9
        await sim.unplug()
        gone = await link.read(2.0)
        assert gone.state["connected"] == 0.0 and gone.power_kw == 0.0
    with_charger(pki, V1G_201, body, plug=False)


def test_bad_commands_are_never_sent(pki: Pki) -> None:
    async def body(sim: SimulatedChargePoint, csms: Csms) -> None:
        link = csms.link("cp-1")
        with pytest.raises(CommandError, match="setpoint_kw"):
            await link.send(cmd(1, math.nan), 2.0)
        with pytest.raises(OcppVersionError, match="2.0.1"):
            await link.send(cmd(2, -3.0), 2.0)
        with pytest.raises(CommandError, match="device_id"):
            await link.send(cmd(3, 3.0, device="cp-2"), 2.0)
        await sim.step(600.0)
        with pytest.raises(CommandError, match="valid_until"):  # expired on the shared clock
            await link.send(cmd(4, 3.0, valid_s=600.0), 2.0)
        assert sim.profiles_received == 0
        with pytest.raises(ConnectionError, match="cp-7"):
            await csms.link("cp-7").send(cmd(5, 3.0, device="cp-7"), 2.0)
    with_charger(pki, V1G_201, body)


def test_library_schema_validation_on_the_charger_refuses_a_malformed_profile(pki: Pki) -> None:
    async def body(sim: SimulatedChargePoint, csms: Csms) -> None:
        session = csms.sessions["cp-1"]
        assert session.cp is not None
        good = encode_set_charging_profile(cmd(1, 7.0), "2.0.1", now=T0, transaction_id=session.transaction_id)
        bad = dict(good["chargingProfile"])
        bad["chargingSchedule"] = [dict(bad["chargingSchedule"][0],
                                        chargingSchedulePeriod=[{"startPeriod": 0, "limit": "7 kW"}])]
        with pytest.raises(TypeConstraintViolationError):  # refused locally by the library too
            await check_against_schema({"evseId": 1, "chargingProfile": bad}, "2.0.1")
        request = session.cp._call.SetChargingProfile(evse_id=1, charging_profile=bad)
        with pytest.raises(OCPPError) as err:  # skip our side's check: the charger's library answers CallError
            await asyncio.wait_for(session.cp.call(request, suppress=False, skip_schema_validation=True), 2.0)
        assert isinstance(err.value, TypeConstraintViolationError)
        assert sim.profiles_received == 0 and sim.profile is None
    with_charger(pki, V1G_201, body)


def test_a_flood_of_commands_is_rate_limited_locally(pki: Pki) -> None:
    now = [0.0]

    async def body(sim: SimulatedChargePoint, csms: Csms) -> None:
        link = csms.link("cp-1")
        acks = [await link.send(cmd(i, 1.0 + 0.1 * i), 2.0) for i in range(10)]
        assert [a.accepted for a in acks] == [True] * 3 + [False] * 7
        assert all("rate limit: at most 3 commands per 60 s" in a.reason for a in acks[3:])
        assert sim.profiles_received == 3  # the excess never left the CSMS
        now[0] = 59.9
        assert not (await link.send(cmd(10, 2.0), 2.0)).accepted
        now[0] = 60.0  # the first slots free a full window after they were taken
        assert (await link.send(cmd(11, 2.0), 2.0)).accepted
        assert sim.profiles_received == 4
    with_charger(pki, V1G_201, body, rate_limit=RateLimit(max_commands=3, window_s=60.0),
                 monotonic=lambda: now[0])


# ------------------------------------------------------------------------------------------ security


@pytest.mark.parametrize(("password", "path_id"), [
    (None, "cp-1"),  # no Authorization header
    ("wrong-password-123456", "cp-1"),
    (PASSWORD, "cp-2"),  # the right password, but the basic-auth user is not the identity in the path
])
def test_profile2_refuses_a_charger_without_the_right_credentials(pki: Pki, password: str | None,
                                                                  path_id: str) -> None:
    async def scenario() -> None:
        csms = Csms(profile2(pki))
        port = await csms.start()
        sim = SimulatedChargePoint(ChargePointSpec("cp-1"), start_time=T0)
        try:
            with pytest.raises(ConnectionRefusedError, match="HTTP 401"):
                await sim.connect(f"wss://127.0.0.1:{port}/ocpp/{path_id}",
                                  ssl_context=client_ssl_context(pki.ca), password=password, timeout_s=5.0)
            assert csms.sessions == {} and csms.refused == [(path_id, 401)]
        finally:
            await sim.close()
            await csms.stop()
    run(scenario())


def test_passwords_are_never_logged(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def body(sim: SimulatedChargePoint, csms: Csms) -> None:
        other = SimulatedChargePoint(ChargePointSpec("cp-2"), start_time=T0)
        with pytest.raises(ConnectionRefusedError):
            await other.connect(csms.url("cp-2"), ssl_context=client_ssl_context(pki.ca),
                                password="not-the-password-42")
    with_charger(pki, V1G_201, body)
    text = caplog.text
    secrets = [PASSWORD, "not-the-password-42",
               base64.b64encode(f"cp-1:{PASSWORD}".encode()).decode(),
               base64.b64encode(b"cp-2:not-the-password-42").decode()]
    assert not [s for s in secrets if s in text]
    assert "Authorization: <redacted>" in text  # the handshake was logged at DEBUG, without the secret


def test_profile3_accepts_the_vpp_ca_and_refuses_another_ca_or_identity(pki: Pki) -> None:
    async def scenario() -> None:
        csms = Csms(profile3(pki))
        port = await csms.start()
        url = f"wss://127.0.0.1:{port}/ocpp/cp-3"
        sims = []
        try:
            rogue = SimulatedChargePoint(ChargePointSpec("cp-3"), start_time=T0)
            sims.append(rogue)
            with pytest.raises(ConnectionError):  # TLS: the client certificate is from an unknown CA
                await rogue.connect(url, ssl_context=client_ssl_context(pki.ca, pki.rogue_client), timeout_s=5.0)
            assert "cp-3" not in csms.sessions
            impostor = SimulatedChargePoint(ChargePointSpec("cp-3"), start_time=T0)
            sims.append(impostor)
            with pytest.raises(ConnectionRefusedError, match="HTTP 403"):  # a valid cert for cp-9
                await impostor.connect(url, ssl_context=client_ssl_context(pki.ca, pki.client_wrong_cn))
            no_cert = SimulatedChargePoint(ChargePointSpec("cp-3"), start_time=T0)
            sims.append(no_cert)
            with pytest.raises(ConnectionError):
                await no_cert.connect(url, ssl_context=client_ssl_context(pki.ca), timeout_s=5.0)
            assert "cp-3" not in csms.sessions
            good = SimulatedChargePoint(ChargePointSpec("cp-3", "2.0.1"), start_time=T0)
            sims.append(good)
            await good.connect(url, ssl_context=client_ssl_context(pki.ca, pki.client))
            session = await csms.wait_connected("cp-3", 2.0)
            assert session.version == "2.0.1" and session.booted
        finally:
            for sim in sims:
                await sim.close()
            await csms.stop()
    run(scenario())


def test_password_store_sources_and_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"shared password: length 5 is outside the allowed range \[16, 40\]"):
        PasswordStore(shared="short")
    monkeypatch.setenv("VPPRL_TEST_OCPP_PASSWORD", PASSWORD)
    store = PasswordStore.from_env("VPPRL_TEST_OCPP_PASSWORD")
    assert store.check("any-charger", PASSWORD) and not store.check("any-charger", PASSWORD + "x")
    assert PASSWORD not in repr(store)
    monkeypatch.delenv("VPPRL_TEST_OCPP_PASSWORD")
    with pytest.raises(ValueError, match="VPPRL_TEST_OCPP_PASSWORD"):
        PasswordStore.from_env("VPPRL_TEST_OCPP_PASSWORD")
    f = tmp_path / "passwords"
    f.write_text("# charger:password\ncp-1:aaaaaaaaaaaaaaaa1\n\ncp-2:bbbbbbbbbbbbbbbb2\n")
    store = PasswordStore.from_file(f)
    assert store.check("cp-1", "aaaaaaaaaaaaaaaa1") and not store.check("cp-2", "aaaaaaaaaaaaaaaa1")
    assert not store.check("cp-3", "aaaaaaaaaaaaaaaa1")  # no shared fallback in a per-charger file
    f.write_text("cp 1 with spaces:cccccccccccccccc3\n")
    with pytest.raises(ValueError, match=r"passwords:1: expected 'charger_id:password'") as err:
        PasswordStore.from_file(f)
    assert "cccc" not in str(err.value)


def test_rate_limit_and_security_config_are_range_checked(pki: Pki) -> None:
    with pytest.raises(ValueError, match=r"max_commands = 0 is outside the allowed range \[1, 10000\]"):
        RateLimit(max_commands=0)
    with pytest.raises(ValueError, match=r"window_s = -1.0 is outside the allowed range \(0, 86400\]"):
        RateLimit(window_s=-1.0)
    with pytest.raises(ValueError, match="profile = 1"):
        CsmsSecurity(1, server_ssl_context(pki.server.cert, pki.server.key))
    with pytest.raises(ValueError, match="passwords"):
        CsmsSecurity(2, server_ssl_context(pki.server.cert, pki.server.key))
    with pytest.raises(ValueError, match="CERT_REQUIRED"):
        CsmsSecurity(3, server_ssl_context(pki.server.cert, pki.server.key))
    with pytest.raises(ValueError, match=r"efficiency = 1.5 is outside the allowed range \[0.01, 1.0\]"):
        ChargePointSpec("cp-1", efficiency=1.5)


def test_call_shape_of_the_encoded_request_is_what_the_library_sends() -> None:
    """The library turns our wire payload back into the same JSON frame (no key mangling on the way)."""
    from ocpp.charge_point import remove_nones, serialize_as_dict, snake_to_camel_case
    from ocpp.v21 import call

    payload = encode_set_charging_profile(cmd(1, -5.0, lo=-7.0), "2.1", now=T0, transaction_id="t-1")
    request = call.SetChargingProfile(evse_id=payload["evseId"], charging_profile=payload["chargingProfile"])
    on_the_wire = remove_nones(snake_to_camel_case(serialize_as_dict(request)))
    assert on_the_wire == payload
    Call("1", "SetChargingProfile", on_the_wire)  # a well-formed CALL frame
