"""Market eligibility (FERC Order 2222 status per grid operator): services refused before they open, at start-up."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest
from vpprl.envs.markets import SERVICES, check_eligibility, load_market, market_names

D = dt.date.fromisoformat


def test_every_shipped_market_loads_with_dated_services_and_sources():
    assert market_names() == ["caiso", "isone", "miso", "nyiso", "pjm", "spp"]
    for name in market_names():
        m = load_market(name)
        assert set(m.services) == set(SERVICES) and m.citations and 0 < m.min_aggregation_kw <= 100.0


def test_a_service_is_refused_before_its_date_and_allowed_from_it():
    pjm = load_market("pjm")  # the DER aggregation model from 2028-02-02
    with pytest.raises(ValueError, match=r"regulation, which PJM does not open to DER aggregations on 2028-02-01 "
                                         r"\(PJM opens it on 2028-02-02\)"):
        check_eligibility(pjm, ["frequency_regulation"], D("2028-02-01"), 500.0)
    assert check_eligibility(pjm, ["frequency_regulation"], D("2028-02-02"), 500.0) == []
    isone = load_market("isone")  # energy and ancillary services from Nov 2026, capacity not yet scheduled
    assert check_eligibility(isone, ["price_arbitrage", "frequency_regulation"], D("2026-11-01"), 500.0) == []
    with pytest.raises(ValueError, match="capacity, which ISO-NE does not open .* has not scheduled it"):
        check_eligibility(isone, ["demand_response"], D("2030-01-01"), 500.0)
    assert check_eligibility(isone, ["peak_shaving"], D("2020-01-01"), 500.0) == []  # a local service: no market


def test_minimum_size_and_override():
    caiso = load_market("caiso")
    with pytest.raises(ValueError, match="99.0 kW is below CAISO's minimum of 100 kW"):
        check_eligibility(caiso, ["price_arbitrage"], D("2025-01-01"), 99.0)
    notes = check_eligibility(load_market("miso"), ["price_arbitrage"], D("2029-06-30"), 99.0, override=True)
    assert len(notes) == 2 and "opens it on 2030-01-01" in notes[0]


def test_vpprl_evaluate_refuses_a_service_not_yet_open_and_names_bad_fields(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "vpprl.training.evaluate", *args, "num_homes=10",
                               "policies=[no_control]", "seeds=[0]", f"hydra.run.dir={tmp_path}"],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)

    done = run("task=frequency_regulation", "market=pjm", "market_date=2027-06-01")
    assert done.returncode == 2 and "PJM does not open to DER aggregations on 2027-06-01" in done.stderr
    assert "Traceback" not in done.stderr
    done = run("market=ercot")
    assert done.returncode == 2 and "market must be one of ['caiso'" in done.stderr
    done = run("market=caiso", "market_date=next-week")
    assert done.returncode == 2 and "market_date must be an ISO date" in done.stderr
    done = run("market=caiso", "market_date=2025-06-01", "dt_s=3600", "episode_hours=2")
    assert done.returncode == 0, done.stderr[-2000:]
