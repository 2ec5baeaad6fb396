"""Shared fixtures: the CityLearn 2022 dataset that ships inside the package."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def citylearn_dir() -> Path:
    from vpprl.data.bundled import bundled_dataset_path

    return bundled_dataset_path("citylearn_2022")


@pytest.fixture(scope="session")
def citylearn_dataset(citylearn_dir):
    from vpprl.data.citylearn import load_citylearn

    return load_citylearn(citylearn_dir)
