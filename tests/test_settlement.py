"""Programme settlement of evaluated DR events: per-home event records, opt-outs, the report, the CLI."""

from __future__ import annotations

import csv
import datetime as dt
import subprocess
import sys

import numpy as np
import pytest
from test_tasks import _flat_load_env
from vpprl.envs.programs import Program, Season, load_program, task_params_under
from vpprl.envs.tasks.demand_response import EventRecord
from vpprl.training.settlement import report


def _run_flat(opt_out: float, discharge: float = -1.0) -> tuple[list, np.ndarray]:
    """Flat 1 kW homes (see test_tasks._flat_load_env) whose batteries are told to discharge in the 17:00 event."""
    env = _flat_load_env()
    env.task("demand_response").opt_out_probability = opt_out
    env.reset(seed=0)
    task = env.task("demand_response")
    battery = np.zeros(5)
    for t in range(96):
        action = np.zeros((5, 6), np.float32)
        if task.active[t]:
            action[:, 0] = discharge
        env.step(action)
        if task.active[t]:
            battery += env.fleet.last_outcome.device_kw[0].astype(float) * 0.25
    return task.event_records(), battery


def test_each_home_is_credited_what_its_battery_delivered_on_the_events_calendar_day():
    """Flat 1 kW homes: each home's CBL share is 1 kW x 1 h, so it delivered exactly what its battery discharged
    (worked by hand). Start day 23 of data starting Monday 2024-01-01 is Wednesday 24 January, 17:00 for 1 h."""
    records, battery_kwh = _run_flat(0.0)
    assert len(records) == 1
    r = records[0]
    assert r.date == dt.date(2024, 1, 24) and r.start_h == 17.0 and r.hours == 1.0
    np.testing.assert_allclose(r.baseline_kwh, 1.0, rtol=1e-5)
    assert battery_kwh.sum() < -5.0  # some batteries empty: they deliver 0
    np.testing.assert_allclose(r.delivered_kwh, -battery_kwh, rtol=1e-4)
    assert not r.opted_out.any()


def test_an_occupant_who_opts_out_keeps_the_home_under_its_own_control():
    """Every occupant opts out: whatever the policy asks, the homes draw what they draw with no policy at all."""
    out, out_battery = _run_flat(1.0)
    idle, idle_battery = _run_flat(0.0, discharge=0.0)  # action 0 = the devices' own control
    assert out[0].opted_out.all()
    np.testing.assert_allclose(out_battery, idle_battery, atol=1e-6)
    np.testing.assert_allclose(out[0].metered_kwh, idle[0].metered_kwh, rtol=1e-6)


def _record(month: int, start_h: float, hours: float, delivered, opted=None) -> EventRecord:
    delivered = np.asarray(delivered, float)
    return EventRecord(dt.date(2025, month, 10), start_h, hours, delivered + 10.0, np.full(len(delivered), 10.0),
                       np.zeros(len(delivered), bool) if opted is None else np.asarray(opted, bool))


def test_report_bills_and_annualises_a_monthly_capacity_programme_by_hand(tmp_path):
    """Con Edison CSRP-like: $18/kW-month x pledge x performance + $1/kWh; 5 events a year over May-September.
    Home 0 (pledged 5 kW) delivered 12 kWh in one 4-h July event (factor 12 / 20 = 0.6): $18 x 5 x 0.6 = $54
    + $12 = $66 on the evaluated event; a year = $54 x 5 months + $12 x 5 events = $330. Home 1 (2 kW) opted
    out: factor 0 and no credit."""
    program = load_program("con_edison_csrp")
    records = {"rule_based": [_record(7, 14.0, 4.0, [12.0, 6.0], opted=[False, True])]}
    per_home = {"rule_based": {k: np.zeros(2) for k in ("energy_cost", "thermal_discomfort_degh",
                                                      "dhw_discomfort_degh", "ev_unmet_kwh")}}
    text, vpp, homes = report(program, records, per_home, np.array([5.0, 2.0]), tmp_path, plots=False)
    assert homes[0]["paid_evaluated_events"] == pytest.approx(66.0)
    assert homes[0]["performance_factor"] == pytest.approx(0.6) and homes[1]["performance_factor"] == 0.0
    assert homes[0]["annual_earnings"] == pytest.approx(330.0) and homes[1]["annual_earnings"] == 0.0
    assert vpp[0]["delivered_kw"] == pytest.approx(3.0)  # 12 kWh over 4 h; the opt-out counts 0
    assert vpp[0]["cost_per_kw_year"] == pytest.approx(110.0)  # $330 a year for 3 kW
    assert "con_edison_csrp" in text and (tmp_path / "settlement_participants.csv").is_file()
    with open(tmp_path / "settlement_vpp.csv") as fh:
        assert float(next(csv.DictReader(fh))["annual_programme_cost"]) == pytest.approx(330.0)


def test_upfront_incentive_is_spread_over_the_commitment():
    """Green Mountain Power BYOD: $850/kW upfront for 10 years; a 5-kW battery gets $4,250, $425 a year."""
    program = load_program("gmp_bring_your_own_device")
    records = {"oracle": [_record(8, 16.0, 3.0, [9.0])]}
    per_home = {"oracle": {k: np.zeros(1) for k in ("energy_cost", "thermal_discomfort_degh",
                                                  "dhw_discomfort_degh", "ev_unmet_kwh")}}
    _, vpp, homes = report(program, records, per_home, np.array([5.0]), _tmp(), plots=False)
    assert homes[0]["upfront"] == pytest.approx(4250.0) and homes[0]["annual_earnings"] == pytest.approx(425.0)
    assert homes[0]["paid_evaluated_events"] == 0.0


def _tmp():
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp())


def test_the_seasonal_credit_is_the_programmes_marginal_revenue_per_kwh():
    """Mass Save, every summer event called (60 x 3 h): one more kWh in one event raises the summer payment by
    $225 / 180 h = $1.25 (settled, not computed from the formula); winter $50 / 15 h. The DR task's credit under
    the programme is the blended (225 + 50) / (180 + 15) per kWh."""
    from vpprl.envs.programs import EventResults, settle

    program = load_program("mass_save_connected_solutions")
    base = np.full((60, 1), 6.0)

    def pay(delivered):
        return settle(program, EventResults(np.array(["summer"] * 60), np.array([7] * 60), np.full(60, 14.0),
                                            np.full(60, 3.0), delivered, np.zeros((60, 1), bool)))["total"][0]

    bumped = base.copy()
    bumped[5, 0] += 1.0
    assert pay(bumped) - pay(base) == pytest.approx(1.25)
    # a year of events (60 summer + 5 winter, 3 h) each delivering x kW pays 225 x + 50 x for 195 x kWh, settled:
    year = EventResults(np.array(["summer"] * 60 + ["winter"] * 5), np.array([7] * 60 + [1] * 5), np.full(65, 14.0),
                        np.full(65, 3.0), np.full((65, 1), 6.0), np.zeros((65, 1), bool))
    assert program.marginal_per_kwh() == pytest.approx(settle(program, year)["total"][0] / (65 * 6.0))
    assert Program("flat", per_kwh=2.0).marginal_per_kwh() == 2.0


def test_a_programme_shapes_the_dr_task_and_refuses_events_it_would_not_call():
    params = task_params_under("mass_save_connected_solutions", "demand_response", {})
    assert params["demand_response"]["start_window_h"] == [14.0, 16.0]
    assert params["demand_response"]["duration_h"] == 3.0
    mine = task_params_under("mass_save_connected_solutions", "demand_response",
                             {"demand_response": {"credit_per_kwh": 0.3}})
    assert mine["demand_response"]["credit_per_kwh"] == 0.3  # what the user set wins
    with pytest.raises(ValueError, match="task must include demand_response"):
        task_params_under("mass_save_connected_solutions", "price_arbitrage", {})
    with pytest.raises(ValueError, match=r"duration_h = 4 h is longer than program mass_save_connected_solutions"):
        task_params_under("mass_save_connected_solutions", "demand_response", {"demand_response": {"duration_h": 4.0}})
    with pytest.raises(ValueError, match=r"fall outside program mass_save_connected_solutions's summer window"):
        task_params_under("mass_save_connected_solutions", "demand_response",
                          {"demand_response": {"start_window_h": [16.0, 18.0]}})
    with pytest.raises(ValueError, match="month 6 is in seasons a and b"):
        Program("x", seasons={"a": Season(1.0, 1, 1.0, (0.0, 24.0), (6,)), "b": Season(1.0, 1, 1.0, (0.0, 24.0), (6,))})


def test_vpprl_evaluate_prints_the_settlement_for_each_policy(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "vpprl.training.evaluate", "task=demand_response", *args,
                               "num_homes=8", "seeds=[0]", "start_days=[170]", "plots=false",
                               f"hydra.run.dir={tmp_path}"],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)

    done = run("program=mass_save_connected_solutions", "policies=[no_control,rule_based]")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "# Settlement under mass_save_connected_solutions" in done.stdout
    with open(tmp_path / "settlement_participants.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 16 and {r["policy"] for r in rows} == {"no_control", "rule_based"}
    done = run("program=nowhere", "policies=[no_control]")
    assert done.returncode == 2 and "program must be one of" in done.stderr and "Traceback" not in done.stderr
    done = run("program=mass_save_connected_solutions", "+task_params.demand_response.duration_h=4",
               "policies=[no_control]")
    assert done.returncode == 2 and "duration_h = 4 h is longer" in done.stderr


def test_training_under_a_programme_is_paid_its_revenue_per_kwh_and_evaluated_under_it(tmp_path):
    """PG&E ELRP pays $2/kWh: the training env's DR credit is $2/kWh on 4-h events from 16-17 h, and the final
    evaluation settles under the programme with the training's task parameters."""
    from vpprl.training.config import TrainConfig
    from vpprl.training.train import _eval_config

    cfg = TrainConfig(task="demand_response", program="pge_elrp",
                      task_params={"demand_response": {"baseline": "caiso_10_in_10"}})
    dr = cfg.env_kwargs()["task"]["demand_response"]
    assert dr["credit_per_kwh"] == 2.0 and dr["duration_h"] == 4.0 and dr["start_window_h"] == [16.0, 17.0]
    assert dr["baseline"] == "caiso_10_in_10"
    evaluation = _eval_config(cfg, tmp_path, ["no_control"], [0], [170])
    assert evaluation.program == "pge_elrp"
    assert evaluation.tasks()["demand_response"]["baseline"] == "caiso_10_in_10"  # the training's own parameters
    assert dr["shortfall_penalty_per_kwh"] == 0.0  # ELRP charges no penalty
    octopus = TrainConfig(task="demand_response", program="octopus_saving_sessions").env_kwargs()
    assert "credit_per_kwh" not in octopus["task"]["demand_response"]  # GBP is not added to a USD reward


@pytest.mark.parametrize("opt_out", [0.5, 1.0])
def test_the_shield_plans_on_what_opted_out_homes_will_do(opt_out):
    """A feeder limit of 3 kW on five flat 1 kW homes with full batteries. Opted-out homes draw their own 1 kW
    whatever is asked: with some homes still controllable the others discharge to keep the feeder at 3 kW; with
    every home out nothing can be moved, so the shield moves (and charges) nothing and the feeder sees 5 kW."""
    from vpprl.deployment.shield import Shield, ShieldConfig

    env = _flat_load_env()
    env.task("demand_response").opt_out_probability = opt_out
    env.reset(seed=0)
    task = env.task("demand_response")
    b = env.fleet.battery.params
    env.fleet.set_device_states({"battery": b.capacity_kwh * b.soc_max})
    shield = Shield(ShieldConfig(feeder_limit_kw=3.0))
    while not task.active[task.t]:
        env.advance_action(np.zeros((5, 6), np.float32), shield)
    out = env.opted_out_homes()
    _, _, info = env.advance_action(np.zeros((5, 6), np.float32), shield, penalty_per_kwh=1.0)
    metered = env.fleet.last_outcome.net_kw.astype(float)
    np.testing.assert_allclose(metered[out], 1.0, rtol=1e-5)  # their own control: the battery idles
    assert info["shield_moved_kw"][out].sum() == 0.0
    if out.all():
        assert metered.sum() == pytest.approx(5.0, rel=1e-5)
    else:
        assert 0 < out.sum() < 5 and metered.sum() <= 3.0 + 1e-3


def test_annual_earnings_cap_credits_only_then_add_the_upfront_and_penalties():
    """$1/kWh capped at $10 a month (no seasons: 12 capacity months), 12 events a year of 1 h, 2 kW nominated with
    $1/kWh short, $100/kW upfront over 10 years, 5 kW enrolled. One evaluated event delivering 15 kWh: credits
    $15 x 12 = $180 -> capped at $120; penalty 0 (over-delivered); upfront $500 / 10 = $50: $170 a year. One
    delivering 1 kWh: credits $12, penalty 1 kWh x $1 x 12 = -$12, upfront $50: $50."""
    from vpprl.training.settlement import settle_policy

    program = Program("capped", per_kwh=1.0, monthly_cap=10.0, nominated_kw=2.0, shortfall_penalty_per_kwh=1.0,
                      upfront_per_kw=100.0, commitment_years=10.0, events_per_year=12.0)
    for delivered, expected in ((15.0, 170.0), (1.0, 50.0)):
        _, _, annual = settle_policy(program, [_record(7, 17.0, 1.0, [delivered])], np.array([5.0]))
        assert annual == pytest.approx([expected])


def test_events_outside_the_seasons_are_not_settled_and_pooled_seeds_may_exceed_a_seasons_cap(tmp_path):
    """Mass Save calls no event in April: an April event is left out of its settlement. Six January events pooled
    from six evaluation episodes (winter's cap is 5 a season) settle as a sample: 1 kW average -> $50."""
    program = load_program("mass_save_connected_solutions")
    per_home = {"rule_based": {k: np.zeros(1) for k in ("energy_cost", "thermal_discomfort_degh",
                                                      "dhw_discomfort_degh", "ev_unmet_kwh")}}
    january = [EventRecord(dt.date(2025, 1, 6 + k), 14.0, 3.0, np.array([13.0]), np.array([10.0]),
                           np.zeros(1, bool)) for k in range(6)]
    april = EventRecord(dt.date(2025, 4, 8), 14.0, 3.0, np.array([40.0]), np.array([10.0]), np.zeros(1, bool))
    text, vpp, homes = report(program, {"rule_based": january + [april]}, per_home, np.array([5.0]), tmp_path,
                              plots=False)
    assert vpp[0]["events"] == 6 and homes[0]["paid_capacity_winter"] == pytest.approx(50.0)
    assert "1 evaluated event(s) per policy fell outside" in text
