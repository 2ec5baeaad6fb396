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
