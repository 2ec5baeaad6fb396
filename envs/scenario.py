"""Scenario = data source + fleet + tasks + time settings + cost weights; validated at construction."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from ..data.citylearn import CityLearnDataset, load_citylearn
from ..data.default_scenario import DEFAULT_CLIMATE, check_climate, default_profiles
from ..data.profiles import Profiles
from .fleet import COST_NAMES, Fleet
from .fleet_builder import build_citylearn_fleet, build_fleet, concat_layouts
from .fleet_config import FleetConfig
from .forecast import Forecaster, ForecastConfig
from .splits import check_split
from .tasks import TASKS, Task, make_task
from .terminal import STORAGE_POTENTIALS


@dataclass
class CostWeights:
    """$ per unit of each constraint cost subtracted from the reward (0 = report only, as in
    constrained RL). Costs are always reported in ``info`` whatever the weights."""

    thermal_discomfort_degh: float = 0.5
    dhw_discomfort_degh: float = 0.1
    ev_unmet_kwh: float = 0.5
    battery_reserve_kwh_h: float = 0.2
    site_limit_kwh: float = 1.0
    power_limit_kwh: float = 0.0
    flex_unserved_kwh: float = 0.3

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not 0.0 <= v <= 1e4:
                raise ValueError(f"CostWeights.{f.name} must be in [0, 10000] $/unit, got {v!r}")
        assert tuple(f.name for f in fields(self)) == COST_NAMES


@dataclass
class ScenarioConfig:
    """Everything that defines an environment instance.

    :param tasks: task name -> keyword parameters (see ``vpprl.envs.tasks``); several compose.
    :param dt_s: step length in seconds (1 s .. 1 day); must divide or be a multiple of the data's resolution.
    :param episode_hours: episode length; reaching it is ``truncated``, never ``terminated``.
    :param start_day: first day of every episode, or None for a random day (and hour, for episodes
        shorter than a day) drawn from ``reset(seed=...)``.
    :param dataset: a CityLearn-format dataset directory, or None for the default scenario.
    :param citylearn_replicate: with a dataset, sample ``fleet.num_homes`` homes from its buildings
        (True) or use exactly one home per building as published (False).
    :param days: ``train`` (episodes only on training days), ``held_out`` (only on held-out days) or ``all``;
        see ``envs.splits``. With a split, homes are not shifted by whole days (``fleet.max_day_shift`` is
        taken as 0: a shift would read the other split's weeks).
    :param climate: the default scenario's typical-year weather (``greensboro``; held out: ``miami``,
        ``sand_point``).
    :param shaping_gamma: the discount the learner uses: the terminal value is paid step by step as
        ``gamma * Phi(s') - Phi(s)`` (potential-based shaping exact for that discount: the discounted sum is
        ``gamma^T Phi(s_T) - Phi(s_0)``). 1 (default) for evaluation: rewards then sum to the scored return.
    :param storage_potential: how the shaping values stored energy at each step (``envs.terminal``):
        ``terminal_price`` (default: the terminal value as it accrues) or ``highest_price_ahead`` (the
        highest import price still to come; potential-based, so the optimal policy is unchanged, and the
        credit for storing before a peak comes when the energy is stored). A learning aid: evaluation
        keeps the default, so its rewards sum to the scored return.
    :param horizon_is_terminal: end episodes with ``terminated`` instead of ``truncated``: the scored problem
        ends at the horizon, where the terminal value prices what is stored, so a learner must not bootstrap
        a value beyond it (training sets this; Gymnasium's time-limit convention is the default).
    :param forecast: how inputs of the step being decided are forecast for everything that decides
        (observations, rules, MPC; the shield and the physics run on the truth); see ``envs.forecast``.
        The oracle needs ``ForecastConfig.perfect()``.
    """

    fleet: FleetConfig = field(default_factory=FleetConfig)
    tasks: dict = field(default_factory=lambda: {"price_arbitrage": {}})
    dt_s: int = 900
    episode_hours: float = 24.0
    start_day: int | None = None
    dataset: str | None = None
    citylearn_replicate: bool = False
    num_profiles: int = 64
    cost_weights: CostWeights = field(default_factory=CostWeights)
    forecast: ForecastConfig = field(default_factory=ForecastConfig)
    days: str = "all"
    climate: str = DEFAULT_CLIMATE
    shaping_gamma: float = 1.0
    storage_potential: str = "terminal_price"
    horizon_is_terminal: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.fleet, dict):
            self.fleet = FleetConfig(**self.fleet)
        if isinstance(self.cost_weights, dict):
            self.cost_weights = CostWeights(**self.cost_weights)
        if isinstance(self.forecast, dict):
            self.forecast = ForecastConfig(**self.forecast)
        if not isinstance(self.dt_s, int) or not 1 <= self.dt_s <= 86400:
            raise ValueError(f"ScenarioConfig.dt_s must be an integer in [1, 86400] seconds, got {self.dt_s!r}")
        if not self.dt_s / 3600.0 <= self.episode_hours <= 24.0 * 366:
            raise ValueError(f"ScenarioConfig.episode_hours must be in [dt_s/3600, 8784], got {self.episode_hours!r}")
        if not self.tasks:
            raise ValueError(f"ScenarioConfig.tasks must name at least one of {sorted(TASKS)}")
        for name in self.tasks:
            if name not in TASKS:
                raise ValueError(f"ScenarioConfig.tasks: unknown task {name!r}; choose from {sorted(TASKS)}")
        if self.start_day is not None and not 0 <= self.start_day <= 365:
            raise ValueError(f"ScenarioConfig.start_day must be in [0, 365] or None, got {self.start_day!r}")
        check_split("ScenarioConfig.days", self.days)
        if not 0.0 <= self.shaping_gamma <= 1.0:
            raise ValueError(f"ScenarioConfig.shaping_gamma must be in [0, 1], got {self.shaping_gamma!r}")
        if self.storage_potential not in STORAGE_POTENTIALS:
            raise ValueError(f"ScenarioConfig.storage_potential must be one of {list(STORAGE_POTENTIALS)}, got "
                             f"{self.storage_potential!r}")
        check_climate("ScenarioConfig.climate", self.climate)
        if self.dataset is not None and self.climate != DEFAULT_CLIMATE:
            raise ValueError(f"ScenarioConfig.climate={self.climate!r} applies to the default scenario only; a "
                             f"dataset ({self.dataset}) brings its own weather")
        if not 1 <= self.num_profiles <= 4096:
            raise ValueError(f"ScenarioConfig.num_profiles must be in [1, 4096], got {self.num_profiles!r}")

    @property
    def episode_steps(self) -> int:
        return max(1, int(round(self.episode_hours * 3600 / self.dt_s)))


@functools.lru_cache(maxsize=4)
def _citylearn(dataset: str) -> CityLearnDataset:
    """A dataset is read once per process: envs rebuilt every episode (resampled fleets) reuse it."""
    return load_citylearn(dataset)


def load_profiles(config: ScenarioConfig, profiles: Profiles | None = None):
    """(profiles, layout) for the scenario's data source and fleet (or for ``profiles`` given directly)."""
    if profiles is not None:
        return profiles, build_fleet(config.fleet, profiles)
    if config.dataset is not None:
        ds = _citylearn(config.dataset)
        layout = build_citylearn_fleet(ds, config.fleet, replicate=config.citylearn_replicate)
        return ds.profiles, layout
    default: Profiles = default_profiles(config.num_profiles, climate=config.climate)
    return default, build_fleet(config.fleet, default)


def build_scenario(config: ScenarioConfig, profiles: Profiles | None = None,
                   fleet_seeds: Sequence[int] | None = None) -> tuple[Fleet, list[Task]]:
    """Construct the fleet simulator and the task objects of a scenario (on ``profiles`` if given).

    ``fleet_seeds``: simulate one fleet of ``config.fleet`` per seed (each drawn as a single fleet with that seed
    would be), side by side in one fleet with a clock per fleet (``Fleet.clocks``)."""
    if config.days != "all" and config.fleet.max_day_shift:  # whole-day shifts would read the other split's days
        config = dataclasses.replace(config, fleet=dataclasses.replace(config.fleet, max_day_shift=0))
    if fleet_seeds is None:
        profiles, layout = load_profiles(config, profiles)
        clocks = 1
    else:
        if not len(fleet_seeds):
            raise ValueError("build_scenario: fleet_seeds must name at least one fleet seed")
        parts = [load_profiles(dataclasses.replace(config, fleet=dataclasses.replace(config.fleet, seed=int(seed))),
                               profiles) for seed in fleet_seeds]
        profiles, layout = parts[0][0], concat_layouts([part[1] for part in parts])
        clocks = len(fleet_seeds)
    fleet = Fleet(profiles, layout, config.dt_s, Forecaster(config.forecast), clocks)
    tasks = [make_task(name, **(params or {})) for name, params in config.tasks.items()]
    return fleet, tasks
