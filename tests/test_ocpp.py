"""EV chargers over OCPP on loopback: the VPP's CSMS against simulated charge points (real ocpp + TLS).

References the code under test did not compute: hand-worked energies (AC kW x hours x efficiency into the
battery, / efficiency out of it), hand-written OCPP payloads and meter values, the OCA JSON schemas shipped
in the ``ocpp`` package (the library's validator is the judge), and OpenSSL's certificate verification.
Profile rules checked (OCPP 2.0.1 / 2.1 part 2, K01): FR.05 (a known profile id is replaced), FR.06 (no
second id with the same stackLevel / purpose / EVSE and an overlapping validity) and FR.39 (no second
TxProfile id with the same stackLevel and transaction).
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
from ocpp.charge_point import camel_to_snake_case
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
    telemetry_from_meter_values,
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


# sha256("org.vpprl/cp-1/1/<purpose>")[:4] as a big-endian int & 0x7FFFFFFF, worked out with hashlib by hand:
# the ids must never change between releases, or a restarted CSMS would clash with its own profiles (K01.FR.06)
TX_PROFILE_ID, TX_DEFAULT_ID = 26297399, 546918926


def test_201_payload_is_the_hand_written_limit_profile_and_passes_the_oca_schema() -> None:
    payload = encode_set_charging_profile(cmd(1, 7.0), "2.0.1", now=T0, transaction_id="cp-1-1")
    pid = TX_PROFILE_ID
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


def test_every_command_to_a_charger_evse_and_purpose_reuses_one_profile_id() -> None:
    """K01.FR.05/.06: the next command must replace the previous profile, so it carries the same id; the
    command id travels in customData instead."""
    tx = [encode_set_charging_profile(cmd(n, 1.0 + n, issued=T0 + 60 * n), "2.1", now=T0 + 60 * n,
                                      transaction_id="cp-1-1")["chargingProfile"] for n in range(3)]
    assert [p["id"] for p in tx] == [TX_PROFILE_ID] * 3 and {p["stackLevel"] for p in tx} == {0}
    assert [p["customData"]["commandId"] for p in tx] == ["cp-1:0", "cp-1:1", "cp-1:2"]
    idle = encode_set_charging_profile(cmd(3, 2.0), "2.0.1", now=T0)["chargingProfile"]
    assert (idle["chargingProfilePurpose"], idle["id"]) == ("TxDefaultProfile", TX_DEFAULT_ID)
    other = encode_set_charging_profile(cmd(1, 2.0, device="cp-2"), "2.0.1", now=T0)["chargingProfile"]
    assert other["id"] not in (TX_PROFILE_ID, TX_DEFAULT_ID)
    assert profile_id_for("cp-1", "TxProfile") == TX_PROFILE_ID
    assert all(0 < i < 2**31 for i in (TX_PROFILE_ID, TX_DEFAULT_ID, other["id"]))


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


def test_a_second_command_replaces_the_first_and_power_follows_it(pki: Pki) -> None:
    """With a conformant charger (K01.FR.06/.39 enforced) the second command of a transaction is accepted,
    because it replaces the first profile under the same id (K01.FR.05)."""
    async def body(sim: SimulatedChargePoint, csms: Csms) -> None:
        link = csms.link("cp-1")
        assert (await link.send(cmd(1, 7.0), 2.0)).accepted
        await sim.step(900.0)
        second = await link.send(cmd(2, 3.0, issued=T0 + 900.0), 2.0)
        assert second.accepted, second.reason
        await sim.step(900.0)
        tel = await link.read(2.0)
        # 7 kW x 0.25 h x 0.9 = 1.575 kWh, then 3 kW x 0.25 h x 0.9 = 0.675 kWh
        assert tel.power_kw == pytest.approx(3.0, abs=1e-9)
        assert tel.state["soc_kwh"] == pytest.approx(E0 + 1.575 + 0.675, abs=1e-9)
        assert sim.applied_profile_ids == [TX_PROFILE_ID, TX_PROFILE_ID]
        assert sim.applied_command_ids == ["cp-1:1", "cp-1:2"]
        assert list(sim.profiles) == [TX_PROFILE_ID]  # replaced, not stacked
    with_charger(pki, V1G_201, body)


def test_idle_charger_default_profile_is_replaced_and_a_resend_binds_to_the_new_transaction(pki: Pki) -> None:
    async def body(sim: SimulatedChargePoint, csms: Csms) -> None:
        link = csms.link("cp-1")
        assert (await link.send(cmd(1, 2.0), 2.0)).accepted  # TxDefaultProfile
        latest = cmd(2, -4.0, lo=-7.0)
        assert (await link.send(latest, 2.0)).accepted  # replaces it (K01.FR.06 would refuse a new id)
        assert list(sim.profiles) == [TX_DEFAULT_ID] and sim.applied_command_ids == ["cp-1:1", "cp-1:2"]
        again = await link.send(latest, 2.0)
        assert again.accepted and "already applied" in again.reason and sim.profiles_received == 2
        await sim.plug_in(capacity_kwh=60.0, soc=0.5, target_soc=0.9)
        resent = await link.send(latest, 2.0)  # same command, now a transaction runs: sent as its TxProfile
        assert resent.accepted and sim.profiles_received == 3
        assert sorted(sim.profiles) == sorted([TX_DEFAULT_ID, TX_PROFILE_ID])
        assert sim.profile is not None and sim.profile.purpose == "TxProfile"
        await sim.step(900.0)
        tel = await link.read(2.0)
        # -4 kW for 0.25 h: 1 kWh at the plug, / 0.9 out of the battery
        assert tel.power_kw == pytest.approx(-4.0, abs=1e-9)
        assert tel.state["soc_kwh"] == pytest.approx(E0 - 1.0 / 0.9, abs=1e-9)
    with_charger(pki, V2G_21, body, plug=False)


def _hand_profile(pid: int, purpose: str, *, valid_from: str | None, valid_to: str, limit_w: float,
                  transaction_id: str | None = None, stack_level: int = 0) -> dict:
    profile = {"id": pid, "stackLevel": stack_level, "chargingProfilePurpose": purpose,
               "chargingProfileKind": "Absolute", "validTo": valid_to,
               "chargingSchedule": [{"id": pid, "startSchedule": "2023-11-14T22:13:20Z", "chargingRateUnit": "W",
                                     "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit_w}]}]}
    if valid_from is not None:
        profile["validFrom"] = valid_from
    if transaction_id is not None:
        profile["transactionId"] = transaction_id
    return profile


async def _set_raw(csms: Csms, profile: dict) -> tuple[str, str | None]:
    """Send a hand-built SetChargingProfile past the link; (status, reasonCode) of the charger's answer."""
    session = csms.sessions["cp-1"]
    assert session.cp is not None
    get_validator(MessageType.Call, "SetChargingProfile", session.version).validate(
        {"evseId": 1, "chargingProfile": profile})
    result = await asyncio.wait_for(session.cp.call(session.cp._call.SetChargingProfile(
        evse_id=1, charging_profile=profile), suppress=False), 2.0)
    return result.status, (result.status_info or {}).get("reason_code")


def test_charger_refuses_an_overlapping_default_profile_with_another_id_k01_fr_06(pki: Pki) -> None:
    async def body(sim: SimulatedChargePoint, csms: Csms) -> None:
        link = csms.link("cp-1")
        assert (await link.send(cmd(1, 2.0), 2.0)).accepted  # TxDefaultProfile valid T0 .. T0 + 1 h
        # another id, same stackLevel 0 / purpose / EVSE, valid 22:43:20 .. 00:13:20: overlaps 22:13:20 .. 23:13:20
        overlapping = _hand_profile(77, "TxDefaultProfile", valid_from="2023-11-14T22:43:20Z",
                                    valid_to="2023-11-15T00:13:20Z", limit_w=1000.0)
        assert await _set_raw(csms, overlapping) == ("Rejected", "DuplicateProfile")
        no_from = _hand_profile(78, "TxDefaultProfile", valid_from=None, valid_to="2023-11-14T22:30:00Z",
                                limit_w=1000.0)  # validFrom absent = unbounded: overlaps too
        assert await _set_raw(csms, no_from) == ("Rejected", "DuplicateProfile")
        assert list(sim.profiles) == [TX_DEFAULT_ID] and sim.applied_command_ids == ["cp-1:1"]
        # from 23:13:21, after the VPP profile's validTo 23:13:20: no overlap, so accepted next to it
        later = _hand_profile(79, "TxDefaultProfile", valid_from="2023-11-14T23:13:21Z",
                              valid_to="2023-11-15T00:13:20Z", limit_w=1000.0)
        assert await _set_raw(csms, later) == ("Accepted", None)
        assert sorted(sim.profiles) == sorted([TX_DEFAULT_ID, 79])
        assert (await link.send(cmd(2, 3.0), 2.0)).accepted  # the VPP's own next command: same id, replaced
        assert sim.applied_profile_ids == [TX_DEFAULT_ID, 79, TX_DEFAULT_ID]
    with_charger(pki, V1G_201, body, plug=False)


def test_charger_refuses_a_second_tx_profile_id_k01_fr_39_and_accepts_a_same_id_replacement(pki: Pki) -> None:
    async def body(sim: SimulatedChargePoint, csms: Csms) -> None:
        link = csms.link("cp-1")
        assert (await link.send(cmd(1, 7.0), 2.0)).accepted
        tx = sim.transaction_id
        other_id = _hand_profile(78, "TxProfile", valid_from=None, valid_to="2023-11-14T23:13:20Z",
                                 limit_w=1000.0, transaction_id=tx)
        assert await _set_raw(csms, other_id) == ("Rejected", "InvalidStackLevel")
        same_id = _hand_profile(TX_PROFILE_ID, "TxProfile", valid_from=None, valid_to="2023-11-14T23:13:20Z",
                                limit_w=1000.0, transaction_id=tx)
        assert await _set_raw(csms, same_id) == ("Accepted", None)  # K01.FR.05: replaces the VPP's profile
        assert list(sim.profiles) == [TX_PROFILE_ID]
        await sim.step(900.0)
        # the replacement's 1 kW: 1 x 0.25 x 0.9 = 0.225 kWh (the replaced 7 kW would give 1.575)
        tel = await link.read(2.0)
        assert tel.power_kw == pytest.approx(1.0, abs=1e-9)
        assert tel.state["soc_kwh"] == pytest.approx(E0 + 0.225, abs=1e-9)
    with_charger(pki, V1G_201, body)


def test_replayed_command_id_is_applied_once_and_an_old_command_never_overrides(pki: Pki) -> None:
    async def body(sim: SimulatedChargePoint, csms: Csms) -> None:
        link = csms.link("cp-1")
        first, newer = cmd(1, 7.0), cmd(2, 3.0)  # issued at the same instant: the later one is newer
        assert (await link.send(first, 2.0)).accepted
        assert (await link.send(newer, 2.0)).accepted  # both rate-limit slots are taken now
        replay = await link.send(first, 2.0)  # a late resend of the old command
        assert replay.accepted and "already applied" in replay.reason and "superseded by cp-1:2" in replay.reason
        again = await link.send(newer, 2.0)
        assert again.accepted and "already applied" in again.reason
        stale = await link.send(cmd(0, 9.0, issued=T0 - 60.0), 2.0)  # never sent, issued before cp-1:2
        assert not stale.accepted and "stale" in stale.reason
        assert sim.profiles_received == 2 and sim.applied_command_ids == ["cp-1:1", "cp-1:2"]
        await sim.step(900.0)
        # the newer 3 kW stays in force: 3 x 0.25 x 0.9 = 0.675 kWh (7 kW would have given 1.575)
        assert (await link.read(2.0)).state["soc_kwh"] == pytest.approx(E0 + 0.675, abs=1e-9)
        blocked = await link.send(cmd(3, 5.0, issued=T0 + 20.0), 2.0)  # a new command does take a slot
        assert not blocked.accepted and "rate limit" in blocked.reason
    with_charger(pki, V1G_201, body, rate_limit=RateLimit(max_commands=2, window_s=3600.0))


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


# ----------------------------------------------------------------------------------------- telemetry


def _wire(samples: list[dict], version: str = "2.1", stamp: str = "2023-11-14T22:13:20Z") -> list[dict]:
    """A hand-written meterValue list, checked against the OCA MeterValues schema, then snake_cased the way
    the ocpp library hands it to a handler."""
    meter_value = [{"timestamp": stamp, "sampledValue": samples}]
    get_validator(MessageType.Call, "MeterValues", version).validate({"evseId": 1, "meterValue": meter_value})
    return camel_to_snake_case(meter_value)


def _w(value: float, measurand: str = "Power.Active.Import", unit: str = "W", **extra: object) -> dict:
    return {"value": value, "measurand": measurand, "unitOfMeasure": {"unit": unit}, **extra}


def test_per_phase_power_samples_are_summed_not_overwritten() -> None:
    # L1 2300 W, L2 2.3 kW, L3 23 x 10^2 W: 6900 W drawn in all (the last sample alone would say 2300 W)
    samples = [_w(2300.0, phase="L1"), _w(2.3, unit="kW", phase="L2"),
               {"value": 23.0, "measurand": "Power.Active.Import", "phase": "L3",
                "unitOfMeasure": {"unit": "W", "multiplier": 2}},
               _w(0.0, "Power.Active.Export", phase="L1"), _w(0.0, "Power.Active.Export", phase="L2"),
               _w(0.0, "Power.Active.Export", phase="L3"), _w(12345.0, "Energy.Active.Import.Register", "Wh")]
    tel = telemetry_from_meter_values("cp-1", _wire(samples, "2.0.1"), connected=False)
    assert tel is not None and tel.power_kw == pytest.approx(6.9, abs=1e-12)
    # an overall sample (no phase) is the charger's own total: it wins over the phases, nothing is added twice
    tel = telemetry_from_meter_values("cp-1", _wire([*samples, _w(7000.0)], "2.0.1"), connected=False)
    assert tel is not None and tel.power_kw == pytest.approx(7.0, abs=1e-12)
    # export per phase (V2G): 1.2 + 1.2 + 1.2 kW out, nothing in -> -3.6 kW
    v2g = [_w(1200.0, "Power.Active.Export", phase=ph) for ph in ("L1-N", "L2-N", "L3-N")]
    tel = telemetry_from_meter_values("cp-1", _wire(v2g), connected=False)
    assert tel is not None and tel.power_kw == pytest.approx(-3.6, abs=1e-12)
    # an Inlet meter next to the Outlet (default location) one is not added in
    both = [_w(1000.0, phase="L1"), _w(1000.0, phase="L2"), _w(2500.0, location="Inlet")]
    tel = telemetry_from_meter_values("cp-1", _wire(both), connected=False)
    assert tel is not None and tel.power_kw == pytest.approx(2.0, abs=1e-12)


def test_soc_measurand_with_a_known_capacity_gives_soc_kwh() -> None:
    power = _w(3000.0)
    # OCPP 2.1: SoC 45 % and Display.BatteryEnergyCapacity 77 kWh -> 0.45 x 77 = 34.65 kWh in the battery
    tel = telemetry_from_meter_values("cp-1", _wire([power, _w(45.0, "SoC", "Percent", location="EV"),
                                                     _w(77.0, "Display.BatteryEnergyCapacity", "kWh")]), True)
    assert tel is not None
    assert tel.state["soc_kwh"] == pytest.approx(34.65, abs=1e-12)
    assert tel.state["soc_frac"] == pytest.approx(0.45) and tel.state["capacity_kwh"] == pytest.approx(77.0)
    # capacity known to the session (e.g. NotifyEVChargingNeeds: 60 000 Wh), SoC 50 % -> 30 kWh
    tel = telemetry_from_meter_values("cp-1", _wire([power, _w(50.0, "SoC", "Percent")], "2.0.1"), True,
                                      ev_capacity_wh_known=60_000.0)
    assert tel is not None and tel.state["soc_kwh"] == pytest.approx(30.0, abs=1e-12)
    # SoC alone: a fraction, but no energy (the dispatcher's gate then finds the state missing)
    tel = telemetry_from_meter_values("cp-1", _wire([power, _w(50.0, "SoC", "Percent")], "2.0.1"), True)
    assert tel is not None and tel.state == {"connected": 1.0, "soc_frac": 0.5}
    # another vendor's customData is not the VPP's capacity fallback
    foreign = _w(50.0, "SoC", "Percent", customData={"vendorId": "com.example", "batteryCapacityWh": 1.0})
    tel = telemetry_from_meter_values("cp-1", _wire([power, foreign], "2.0.1"), True)
    assert tel is not None and "soc_kwh" not in tel.state


def test_simulator_reports_standard_measurands_that_pass_the_oca_schema() -> None:
    for spec, capacity_field in ((V2G_21, "Display.BatteryEnergyCapacity"), (V1G_201, None)):
        sim = SimulatedChargePoint(spec, start_time=T0)
        sim.plugged, sim.energy_kwh, sim.capacity_kwh, sim.power_kw = True, 15.0, 60.0, 6.0
        mv = sim._meter_value()
        get_validator(MessageType.Call, "MeterValues", spec.ocpp_version).validate(
            {"evseId": 1, "meterValue": [mv]})
        by = {(s["measurand"], s.get("phase")): s for s in mv["sampledValue"]}
        assert by[("SoC", None)]["value"] == pytest.approx(25.0)  # 15 of 60 kWh
        assert [by[("Power.Active.Import", ph)]["value"] for ph in ("L1", "L2", "L3")] == pytest.approx([2000.0] * 3)
        assert ("Power.Active.Import", None) not in by
        if capacity_field:
            assert by[(capacity_field, None)]["value"] == pytest.approx(60_000.0)
        assert "batteryEnergyWh" not in repr(mv)  # the battery energy is no vendor field any more


def test_201_capacity_from_notify_ev_charging_needs_lasts_for_its_ev_only(pki: Pki) -> None:
    async def body(sim: SimulatedChargePoint, csms: Csms) -> None:
        link, cp = csms.link("cp-1"), sim._cp
        assert cp is not None
        needs = await cp.call(cp._call.NotifyEVChargingNeeds(evse_id=1, charging_needs={
            "requestedEnergyTransfer": "DC",
            "dcChargingParameters": {"evMaxCurrent": 125, "evMaxVoltage": 450, "evEnergyCapacity": 80_000}}))
        assert needs.status == "Accepted"

        async def tx_event(event_type: str, seq: int, tx: str, soc: float, stamp: str) -> None:
            meter = [{"timestamp": stamp, "sampledValue": [_w(0.0), _w(soc, "SoC", "Percent", location="EV")]}]
            await cp.call(cp._call.TransactionEvent(
                event_type=event_type, timestamp=stamp, trigger_reason="CablePluggedIn", seq_no=seq,
                transaction_info={"transactionId": tx}, meter_value=meter), suppress=False)

        await tx_event("Started", 1, "tx-a", 25.0, "2023-11-14T22:13:20Z")
        tel = await link.read(2.0)
        assert tel.state["soc_kwh"] == pytest.approx(20.0, abs=1e-12)  # 25 % of 80 kWh
        await tx_event("Ended", 2, "tx-a", 30.0, "2023-11-14T22:20:00Z")
        await tx_event("Started", 3, "tx-b", 40.0, "2023-11-14T22:30:00Z")  # another EV, no capacity told
        tel = await link.read(2.0)
        assert tel.state["connected"] == 1.0 and tel.state["soc_frac"] == pytest.approx(0.4)
        assert "soc_kwh" not in tel.state
    with_charger(pki, V1G_201, body, plug=False)


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
