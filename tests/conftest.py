"""Shared fixtures: the real CityLearn dataset from ../shared (tests read it, never copy it)."""

from __future__ import annotations

from pathlib import Path

import pytest

CITYLEARN_DIR = (Path(__file__).resolve().parents[2] / "shared" / "data" / "citylearn"
                 / "citylearn_challenge_2022_phase_all_plus_evs")


@pytest.fixture(scope="session")
def citylearn_dir() -> Path:
    if not CITYLEARN_DIR.exists():
        pytest.fail(f"the shared CityLearn dataset is missing at {CITYLEARN_DIR}")
    return CITYLEARN_DIR


@pytest.fixture(scope="session")
def citylearn_dataset(citylearn_dir):
    from vpprl.data.citylearn import load_citylearn

    return load_citylearn(citylearn_dir)
