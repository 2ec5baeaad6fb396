"""The dispatcher's telemetry gate on hand-made readings: what it must refuse, and what it must not."""

from __future__ import annotations

import numpy as np
from vpprl.deployment.commands import Telemetry
from vpprl.deployment.telemetry_gate import REASONS, DeviceLimits, TelemetryGate, TelemetryStore

BATTERY = DeviceLimits(-5.0, 5.0, "soc_kwh", 0.0, 10.0, 5.0 / 0.95, 5.0 / 0.95)  # 10 kWh, 5 kW
EV = DeviceLimits(-7.0, 7.0, "soc_kwh", 0.0, 200.0, 7.0, 7.0, state_tolerance=0.5, reports_connection=True)
TANK = DeviceLimits(0.0, 4.5, "temp_c", 0.0, 100.0, 4.5 / 0.23)  # rises at most 19.6 degC/h; draws cool it freely


def gate():
    store = TelemetryStore(["bat", "ev", "tank"], ["soc_kwh", "soc_kwh", "temp_c"])
    return store, TelemetryGate([BATTERY, EV, TANK])


def check(store, g, now, *readings):
    store.start_cycle()
    for r in readings:
        store.update(r)
    return [REASONS[c] for c in g.check(store, now)]


def test_plausible_readings_pass_and_implausible_ones_are_refused():
    store, g = gate()
    ok = check(store, g, 1000.0, Telemetry("bat", 1000.0, -2.0, {"soc_kwh": 5.0}),
               Telemetry("ev", 999.0, 7.0, {"soc_kwh": 30.0, "connected": 1.0}),
               Telemetry("tank", 1000.0, 4.5, {"temp_c": 50.0}))
    assert ok == ["", "", ""]
    # 15 minutes later: the battery claims +4 kWh (at most 5 kW x 0.25 h / 0.95 + 0.5 = 1.82 kWh possible);
    # the EV sends a NaN connected flag; the tank fell 20 degC (a big draw: allowed)
    bad = check(store, g, 1900.0, Telemetry("bat", 1900.0, 0.0, {"soc_kwh": 9.0, "connected": 0.0}),
                Telemetry("ev", 1900.0, 7.0, {"soc_kwh": 31.0, "connected": float("nan")}),
                Telemetry("tank", 1900.0, 0.0, {"temp_c": 30.0}))
    assert bad == ["state moved faster than the device can", "connected flag not 0 or 1", ""]
    # the tank cannot heat 20 degC in 15 minutes with a 4.5 kW element (worked: 19.6 x 0.25 + 5 = 9.9 degC)
    assert check(store, g, 2800.0, Telemetry("tank", 2800.0, 4.5, {"temp_c": 50.0}))[2] == \
        "state moved faster than the device can"


def test_stale_future_missing_and_non_numeric_readings():
    store, g = gate()
    reasons = check(store, g, 10_000.0, Telemetry("bat", 10_000.0 - 500.0, 0.0, {"soc_kwh": 5.0}),
                    Telemetry("ev", 10_000.0 + 60.0, 0.0, {"soc_kwh": 5.0, "connected": 1.0}))
    assert reasons == ["stale", "stamped in the future", "no telemetry"]
    assert check(store, g, 10_000.0, Telemetry("bat", float("nan"), 0.0, {"soc_kwh": 5.0}))[0] == "no telemetry"
    try:
        store.update(Telemetry("tank", 10_000.0, 0.0, {"temp_c": "hot"}))
    except ValueError as err:
        assert "not numeric" in str(err)
    else:
        raise AssertionError("a non-numeric reading was taken")


def test_a_new_car_may_jump_but_a_battery_cannot_claim_to_be_one():
    store, g = gate()
    check(store, g, 0.0, Telemetry("ev", 0.0, 7.0, {"soc_kwh": 50.0, "connected": 1.0}),
          Telemetry("bat", 0.0, 0.0, {"soc_kwh": 2.0}))
    check(store, g, 900.0, Telemetry("ev", 900.0, 0.0, {"soc_kwh": 0.0, "connected": 0.0}),
          Telemetry("bat", 900.0, 0.0, {"soc_kwh": 2.0}))
    reasons = check(store, g, 1800.0, Telemetry("ev", 1800.0, 7.0, {"soc_kwh": 12.0, "connected": 1.0}),
                    Telemetry("bat", 1800.0, 0.0, {"soc_kwh": 9.0, "connected": 0.0}))
    assert reasons[:2] == ["state moved faster than the device can", ""]  # order: bat, ev
    assert np.isclose(g.last_state[1], 12.0)
