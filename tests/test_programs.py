"""Programme settlement on hand-computed bills and the programmes' own published examples."""

from __future__ import annotations

import numpy as np
import pytest
from vpprl.envs.programs import EventResults, Program, Season, load_program, settle


def events(season, hours, delivered, opted=None, month=None, start_h=None):
    e = len(hours)
    delivered = np.asarray(delivered, float).reshape(e, -1)
    return EventResults(np.array(season), np.array(month or [7] * e), np.array(start_h or [15.0] * e),
                        np.asarray(hours, float), delivered,
                        np.zeros(delivered.shape, bool) if opted is None else np.asarray(opted, bool).reshape(e, -1))


def test_connected_solutions_pays_the_published_example():
    """masssave.com: 'a typical battery capable of a 5-kW continuous contribution ... would pay $1,125 per year'
    (60 summer events at $225/kW); the earlier page's $1,375 adds the 5 winter events at $50/kW."""
    program = load_program("mass_save_connected_solutions")
    summer = events(["summer"] * 60, [3.0] * 60, [15.0] * 60, start_h=[14.0] * 60)
    assert settle(program, summer)["total"] == pytest.approx([1125.0])
    both = events(["summer"] * 60 + ["winter"] * 5, [3.0] * 65, [15.0] * 65, start_h=[14.0] * 65,
                  month=[7] * 60 + [1] * 5)
    bill = settle(program, both)
    assert bill["capacity_summer"] == pytest.approx([1125.0]) and bill["capacity_winter"] == pytest.approx([250.0])
    assert bill["total"] == pytest.approx([1375.0])


def test_average_over_all_event_hours_with_an_opt_out_counting_zero():
    """Three 3-h summer events: 6 kWh, 3 kWh and an opt-out (its 4 kWh not counted): 9 kWh / 9 h = 1 kW -> $225.
    A second participant who drew 3 kWh more than baseline in every event is paid nothing, not charged."""
    program = load_program("mass_save_connected_solutions")
    bill = settle(program, events(["summer"] * 3, [3.0] * 3, [[6.0, -3.0], [3.0, -3.0], [4.0, -3.0]],
                                  opted=[[False, False], [False, False], [True, False]]))
    assert bill["total"] == pytest.approx([225.0, 0.0])


def test_results_the_programme_could_not_produce_are_refused():
    program = load_program("mass_save_connected_solutions")
    with pytest.raises(ValueError, match="61 summer events, more than its cap of 60"):
        settle(program, events(["summer"] * 61, [1.0] * 61, [1.0] * 61))
    with pytest.raises(ValueError, match="lasts 4 h, more than 3 h"):
        settle(program, events(["summer"], [4.0], [1.0], start_h=[14.0]))
    with pytest.raises(ValueError, match=r"falls outside the window \[14, 19\) h"):
        settle(program, events(["summer"], [2.0], [1.0], start_h=[18.0]))


def test_per_kwh_credit_with_a_monthly_cap_and_a_nominated_pilot_with_its_floor():
    """$0.50/kWh: July 150 + 100 kWh -> $125, capped at $100; August 40 kWh -> $20; a negative delivery pays 0.
    Nominated $300/kW x 2 kW with an 80 % floor: 4 of 5 events taken part in -> $600; 3 of 5 -> $0."""
    credit = Program("saving_sessions_like", per_kwh=0.5, monthly_cap=100.0)
    bill = settle(credit, events([""] * 4, [1.0] * 4, [150.0, 100.0, 40.0, -30.0], month=[7, 7, 8, 8]))
    assert bill["per_kwh"] == pytest.approx([145.0]) and bill["total"] == pytest.approx([120.0])
    pilot = Program("drive_like", nominated_per_kw=300.0, nominated_kw=2.0, participation_floor=0.8)
    opted = [[False, False], [False, True], [False, True], [False, False], [True, False]]
    bill = settle(pilot, events([""] * 5, [1.0] * 5, np.ones((5, 2)), opted=opted))
    assert bill["total"] == pytest.approx([600.0, 0.0])
    with pytest.raises(ValueError, match=r"participation_floor = 1.5 is outside the allowed range \[0.0, 1.0\]"):
        Program("bad", participation_floor=1.5)


def test_every_shipped_programme_loads_with_its_sources_and_event_shape():
    from vpprl.envs.programs import program_names, task_params_under

    assert program_names() == ["con_edison_csrp", "ct_energy_storage_solutions", "gmp_bring_your_own_device",
                               "mass_save_connected_solutions", "octopus_saving_sessions", "pepco_drive_pilot",
                               "pge_elrp"]
    for name in program_names():
        program = load_program(name)
        assert program.citations and program.event_duration_h
        task_params_under(name, "demand_response", {})  # its own event shape passes its own checks


def test_shipped_programmes_pay_their_published_rates():
    """Octopus Saving Sessions: 1,800 OctoPoints = GBP 2.25 per kWh saved; CT Energy Storage Solutions: $200/kW-summer
    and $25/kW-winter on average kW; PG&E ELRP: $2/kWh; Pepco DRIVE pilot: $300/kW nominated at >= 80 %
    participation; each for a 5-kW battery holding 5 kW through every event."""
    octopus = load_program("octopus_saving_sessions")
    assert octopus.currency == "GBP"
    assert settle(octopus, events([""], [1.0], [1.5], start_h=[17.0]))["total"] == pytest.approx([3.375])
    ct = load_program("ct_energy_storage_solutions")
    both = events(["summer"] * 2 + ["winter"], [3.0] * 3, [15.0] * 3, start_h=[15.0] * 3, month=[7, 8, 1])
    assert settle(ct, both)["total"] == pytest.approx([5 * 200.0 + 5 * 25.0])
    assert settle(load_program("pge_elrp"), events([""], [4.0], [20.0], start_h=[16.0]))["total"] == \
        pytest.approx([40.0])
    drive = load_program("pepco_drive_pilot")
    opted = [[False, False]] * 4 + [[True, True]]  # both took part in 4 of 5
    bill = settle(drive, events([""] * 5, [2.0] * 5, np.ones((5, 2)), opted=opted), enrolled_kw=np.array([5.0, 3.0]))
    assert bill["total"] == pytest.approx([1500.0, 900.0])


def test_a_shortfall_penalty_is_charged_per_kwh_short_of_the_nomination_but_not_for_an_opt_out():
    """2 kW nominated, $0.40/kWh short: a 2-h event with 3 kWh delivered is 1 kWh short -> -$0.40; an opt-out owes
    nothing; a home that delivered 5 kWh owes nothing."""
    program = Program("penalised", nominated_kw=2.0, shortfall_penalty_per_kwh=0.4)
    bill = settle(program, events([""], [2.0], [[3.0, 1.0, 5.0]], opted=[[False, True, False]]))
    assert bill["shortfall_penalty"] == pytest.approx([-0.4, 0.0, 0.0])
    assert bill["total"] == pytest.approx([-0.4, 0.0, 0.0])
