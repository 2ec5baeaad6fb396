"""``VppEnv``: the centralized Gymnasium environment over a whole fleet.

Observation: per-home features (N x F, row-major) followed by global features (G), float32.
Action: (N x D,) in [-1, 1], home-major, device columns in ``DEVICE_CLASSES`` order; each entry is
default-relative (0 = the device's own behaviour, see ``envs.devices.base``). Entries for devices a
home does not own are ignored. NaN/inf entries are treated as 0 and values outside [-1, 1] are
clipped; both are counted in ``info["action_stats"]``. A wrongly shaped action raises ValueError.

Reward: the tasks' per-home rewards ($) minus battery wear and weighted constraint costs,
averaged over homes ($ per home per step). ``info["reward_per_home"]`` has the per-home terms;
``info["costs"]`` the per-home constraint costs; ``info["cost"]`` the fleet totals; at the last
step ``info["kpis"]`` holds the episode KPIs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import gymnasium as gym
import numpy as np

from ..data.profiles import Profiles
from .devices import DEVICE_CLASSES
from .fleet import COST_NAMES, NUM_DEVICE_CLASSES, StepOutcome
from .fleet_config import FleetConfig
from .forecast import Forecaster, ForecastConfig
from .kpis import KpiTracker
from .observation import BASE_GLOBAL_FEATURES, HOME_FEATURES, ObservationBuilder
from .scenario import ScenarioConfig, build_scenario
from .splits import start_days
from .tasks import TASKS, PriceArbitrage
from .terminal import battery_stored_kwh, storage_potential_prices, stored_energy_kwh, stored_energy_parts, terminal_price

TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "frequency_regulation": {"dt_s": 4, "episode_hours": 1.0},
}


def scenario_from_kwargs(task: str | dict | None = None, num_homes: int | None = None, seed: int | None = None,
                         config: ScenarioConfig | None = None, **overrides: Any) -> ScenarioConfig:
    """Build a ScenarioConfig from the keyword arguments that ``gymnasium.make`` passes.

    ``task`` is a task name or a {name: params} dict; ``num_homes`` and ``seed`` set the fleet;
    any other keyword is a ScenarioConfig field (``dt_s``, ``episode_hours``, ``dataset``, ...).
    """
    cfg = config if config is not None else ScenarioConfig()
    if task is not None:
        tasks = {task: {}} if isinstance(task, str) else dict(task)
        defaults = {k: v for name in tasks for k, v in TASK_DEFAULTS.get(name, {}).items()}
        cfg = replace(cfg, tasks=tasks, **{k: v for k, v in defaults.items() if k not in overrides})
    fleet_kwargs = {}
    if num_homes is not None:
        fleet_kwargs["num_homes"] = num_homes
    if seed is not None:
        fleet_kwargs["seed"] = seed
    fleet = overrides.pop("fleet", cfg.fleet)
    if isinstance(fleet, dict):
        fleet = FleetConfig(**fleet)
    if fleet_kwargs:
        fleet = replace(fleet, **fleet_kwargs)
    unknown = set(overrides) - set(ScenarioConfig.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown scenario option(s) {sorted(unknown)}; valid: "
                        f"{sorted(ScenarioConfig.__dataclass_fields__)} plus task, num_homes, seed")
    return replace(cfg, fleet=fleet, **overrides)


def unpack_env_config(config: Any, kwargs: dict) -> tuple[Any, dict]:
    """(config, kwargs) for ``VppEnv`` from an env's arguments: RLlib passes everything as one dict-like
    ``EnvContext`` (possibly holding ``config``), other callers a ScenarioConfig and/or keywords."""
    if isinstance(config, dict):
        kwargs = {**dict(config), **kwargs}
        config = kwargs.pop("config", None)
    return config, kwargs


class VppEnv(gym.Env):
    """Centralized fleet env for single-agent RL (SB3), the LP oracle and rule-based baselines."""

    metadata = {"render_modes": []}

    def __init__(self, config: ScenarioConfig | None = None, profiles: Profiles | None = None,
                 fleet_seeds: Sequence[int] | None = None, **kwargs: Any) -> None:
        """:param profiles: drive the fleet with these profiles instead of the config's data source.
        :param fleet_seeds: simulate one fleet of ``config.fleet`` per seed in one pass, each with its own clock
            (start day and hour; ``Fleet.clocks``). Only the per-home views use it (``VppHomeBatchEnv(fleets=K)``):
            the centralized observation is for one fleet."""
        self.config = scenario_from_kwargs(config=config, **kwargs)
        self.fleet, self.tasks = build_scenario(self.config, profiles, fleet_seeds)
        self.clocks = self.fleet.clocks
        if self.clocks > 1:
            unsupported = [t.name for t in self.tasks if not t.supports_clocks]
            if unsupported:
                raise ValueError(f"several fleets in one pass (fleet_seeds / fleets > 1) support the tasks "
                                 f"{sorted(name for name, task in TASKS.items() if task.supports_clocks)}; "
                                 f"this scenario has {unsupported}: use one fleet (fleets=1)")
        self.n = self.fleet.n
        self.episode_steps = self.config.episode_steps
        self._obs = ObservationBuilder(self.fleet)
        self.global_features = BASE_GLOBAL_FEATURES + tuple(f"{t.name}.{o}" for t in self.tasks for o in t.obs_names)
        self.home_features = HOME_FEATURES
        n_obs = self.n * len(HOME_FEATURES) + len(self.global_features)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (n_obs,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.n * NUM_DEVICE_CLASSES,), np.float32)
        self.device_classes = DEVICE_CLASSES
        self._weights = [float(getattr(self.config.cost_weights, k)) for k in COST_NAMES]
        self._kpi = KpiTracker(self.fleet.dt_h, self.clocks)
        self._steps = 0
        profiles = self.fleet.profiles
        self._data_s = profiles.num_rows * profiles.dt_s
        self._episode_s = self.episode_steps * self.config.dt_s
        if self._episode_s > self._data_s:
            raise ValueError(f"episode_hours={self.config.episode_hours:g} is longer than the data "
                             f"({self._data_s / 3600:g} h of {profiles.source or 'profiles'})")
        # homes read their profile shifted in time: on data that is not a cyclic year, keep every read inside it
        shift = self.fleet.layout.shift_s
        self._before_s = 0 if profiles.cyclic else max(0, -int(shift.min(initial=0)))
        self._after_s = 0 if profiles.cyclic else max(0, int(shift.max(initial=0)))
        if self.last_start_day < self.first_start_day:
            raise ValueError(f"no start day fits: the homes read the data shifted by up to "
                             f"{self._after_s / 86400:.2f} days and an episode lasts {self.config.episode_hours:g} "
                             f"h, but the data holds {self._data_s / 86400:g} days; lower fleet.max_day_shift")
        history_days = max((getattr(t, "history_days", 0) for t in self.tasks), default=0)
        self.start_days = start_days(self.config.days, self.first_start_day, self.last_start_day,
                                     self.config.episode_hours, history_days)
        if not len(self.start_days):
            raise ValueError(f"ScenarioConfig.days={self.config.days!r}: no {self.config.episode_hours:g}-hour episode "
                             f"fits in that split of the data's days [{self.first_start_day}, {self.last_start_day}]")
        self.check_start_day("ScenarioConfig.start_day", self.config.start_day)

    # ----- episode start ----------------------------------------------------------------------
    @property
    def first_start_day(self) -> int:
        """The first day an episode can start on without a home reading before the data's first row."""
        return int(-(-self._before_s // 86400))

    @property
    def last_start_day(self) -> int:
        """The last day (counted from the data's first row) an episode can start on without running past
        the end of the data, for every home's time shift."""
        return int((self._data_s - self._episode_s - self._after_s) // 86400)

    def check_start_day(self, field_name: str, day: int | None) -> None:
        """ValueError naming ``field_name`` unless ``day`` is None or a start day inside the data."""
        lo, hi = self.first_start_day, self.last_start_day
        if day is not None and not (isinstance(day, (int, np.integer)) and lo <= day <= hi):
            raise ValueError(f"{field_name} must be a whole day in [{lo}, {hi}] (the data holds "
                             f"{self._data_s / 86400:g} days and an episode lasts "
                             f"{self.config.episode_hours:g} h), got {day!r}")
        if day is not None and day not in self.start_days:
            allowed = self.start_days
            raise ValueError(f"{field_name}: day {day} is not a {self.config.days!r} day (envs.splits: every fifth "
                             f"week is held out); choose one of {allowed[:8].tolist()}"
                             f"{' ...' if len(allowed) > 8 else ''}")

    def set_start_day(self, day: int | None) -> None:
        """Fix the first day of the following episodes (None: a random day at each reset)."""
        self.check_start_day("start_day", day)
        self.config.start_day = day

    def set_perfect_foresight(self, perfect: bool) -> None:
        """From the next reset on, decide with the true inputs of each step (the oracle's view) or with the
        scenario's forecasts (everyone else)."""
        config = ForecastConfig.perfect() if perfect else self.config.forecast
        self.fleet.set_forecaster(Forecaster(config))

    @property
    def perfect_foresight(self) -> bool:
        return self.fleet.forecaster.config.is_perfect

    # ----- Gymnasium API ----------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """``options``: see :meth:`reset_fleet`."""
        info = self.reset_fleet(seed=seed, options=options)
        return self._observe(), info

    def reset_fleet(self, *, seed: int | None = None, options: dict | None = None) -> dict:
        """Reset without building the centralized observation (for the per-agent views).

        ``options`` (both optional): ``start_seconds``, the episode's start in seconds from the data's first row
        (one value, or one per fleet), instead of a random day (and hour) of the split; ``device_states``, the
        device states to start from (as ``Fleet.set_device_states`` takes them) instead of random ones: to replay
        an episode, or to start from a real fleet's telemetry."""
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"start_seconds", "device_states"}
        if unknown:
            raise ValueError(f"reset options: unknown key(s) {sorted(unknown)}; allowed: start_seconds, device_states")
        rng = self.np_random
        cfg = self.config
        if "start_seconds" in options:
            start_s = self._checked_start_seconds(options["start_seconds"])
        else:
            size = None if self.clocks == 1 else self.clocks  # a start day and hour per clock
            day = cfg.start_day if cfg.start_day is not None else self.start_days[
                rng.integers(0, len(self.start_days), size=size)].astype(np.int64)
            hour = 0
            if cfg.start_day is None and cfg.episode_hours < 24:  # a random hour too, never past the data's end
                hours_left = (self._data_s - self._episode_s - self._after_s - day * 86400) // 3600
                if cfg.days != "all":  # nor into a day of the other split
                    hours_left = np.minimum(hours_left, int((86400 - self._episode_s) // 3600))
                hour = rng.integers(0, np.minimum(24, hours_left + 1), size=size)
            start_s = day * 86400 + hour * 3600
        self.fleet.reset(rng, start_s)
        if "device_states" in options:
            self.fleet.set_device_states(options["device_states"])
        for task in self.tasks:
            task.reset(self.fleet, self.episode_steps, rng)
        self._kpi.reset()
        self._steps = 0
        pa = next((t for t in self.tasks if isinstance(t, PriceArbitrage)), None)
        self._terminal_price = terminal_price(self.fleet, self.episode_steps, pa.price_scale) if pa else 0.0
        self._terminal_price_home = self.fleet.per_home(self._terminal_price)
        self._stored0 = stored_energy_kwh(self.fleet, self.fleet.thermostat.heating) if pa else None
        self._stored_prev = stored_energy_parts(self.fleet) if pa else None
        self._potential_price = storage_potential_prices(self.fleet, self.episode_steps, pa.price_scale,
                                                         self.config.storage_potential) if pa else None
        if pa and self.clocks > 1:  # (steps + 1, N): each home's prices from its clock
            self._potential_price = self._potential_price[:, self.fleet.clock_of_home]
        self._battery_prev = battery_stored_kwh(self.fleet) if pa else None
        self._terminal_value = 0.0
        return {"start_seconds": self.fleet.start_s}

    def _checked_start_seconds(self, value: Any) -> int | np.ndarray:
        """``reset(options={"start_seconds": ...})`` checked: whole seconds (one, or one per fleet) at which an
        episode fits in the data for every home's time shift."""
        arr = np.asarray(value)
        lo, hi = self.first_start_day * 86400, self._data_s - self._episode_s - self._after_s
        if (arr.dtype.kind not in "iu" or arr.shape not in ((), (self.clocks,))
                or arr.size and not (lo <= arr.min() and arr.max() <= hi)):
            raise ValueError(f"reset options: start_seconds must be whole seconds in [{lo}, {hi}] (an episode of "
                             f"{self.config.episode_hours:g} h inside the data), one value or one per fleet "
                             f"({self.clocks}), got {value!r}")
        if self.config.days != "all" and not np.isin(arr // 86400, self.start_days).all():
            # held out means held out: a start day of the split keeps the episode (and a day each side) in it
            raise ValueError(f"reset options: start_seconds {value!r} starts on a day that is not a "
                             f"{self.config.days!r} start day (envs.splits)")
        return int(arr) if arr.ndim == 0 else arr.astype(np.int64)

    def step(self, action: np.ndarray):
        return self.step_setpoints(self.fleet.setpoints_from_action(action))

    def step_setpoints(self, setpoints_kw: np.ndarray):
        """Step with device-major kW setpoints (D, N) instead of an action: the entry point of the safety
        shield and the dispatch loop, which compute setpoints themselves."""
        reward_home, done, info = self.advance(setpoints_kw)
        return (self._observe(), float(reward_home.mean(dtype=np.float64))) + self.end_flags(done) + (info,)

    def step_action(self, action: np.ndarray, shield: Any = None, penalty_per_kwh: float = 0.0):
        """``step`` through ``shield`` (see :meth:`advance_action`): the Gymnasium 5-tuple."""
        reward_home, done, info = self.advance_action(action, shield, penalty_per_kwh)
        return (self._observe(), float(reward_home.mean(dtype=np.float64))) + self.end_flags(done) + (info,)

    def advance_action(self, action: np.ndarray, shield: Any = None,
                       penalty_per_kwh: float = 0.0) -> tuple[np.ndarray, bool, dict]:
        """``advance`` from a home-major action, through ``shield`` (anything with
        ``project(fleet, setpoints) -> result``, e.g. ``vpprl.deployment.Shield``) when given.

        With a shield, ``info["shield"]`` has its fleet totals, ``info["shield_moved_kw"]`` the power it moved
        per home, and ``penalty_per_kwh`` $ per kWh moved is subtracted from each home's reward (so a policy
        learns to need the shield less). Every env view steps through here, so the penalty is the same in
        all of them."""
        setpoints = self.fleet.setpoints_from_action(action)
        out = self.opted_out_homes()
        bounds = None
        if out is not None:  # occupants who opted out: their devices do what they do; the shield plans on that
            default = self.fleet.action_ranges()[1]
            setpoints = np.array(setpoints, dtype=np.float64)
            setpoints[:, out] = default[:, out]
            if shield is not None:
                lo, hi, unreachable = shield.safe_bounds(self.fleet)
                lo, hi = np.array(lo, dtype=np.float64), np.array(hi, dtype=np.float64)
                lo[:, out] = hi[:, out] = default[:, out]
                bounds = (lo, hi, unreachable)
        if shield is None:
            return self.advance(setpoints)
        result = shield.project(self.fleet, setpoints) if bounds is None else \
            shield.project(self.fleet, setpoints, bounds=bounds)
        reward, truncated, info = self.advance(result.setpoints_kw)
        moved = result.moved_kw.sum(axis=0)
        info["shield"] = result.summary()
        info["shield_moved_kw"] = moved
        if penalty_per_kwh:
            reward = reward - penalty_per_kwh * moved * self.fleet.dt_h
            info["reward_per_home"] = reward
        return reward, truncated, info

    def end_flags(self, done: bool) -> tuple[bool, bool]:
        """(terminated, truncated) for an episode that is ``done`` at its horizon (see
        ``ScenarioConfig.horizon_is_terminal``)."""
        return (done, False) if self.config.horizon_is_terminal else (False, done)

    def advance(self, setpoints_kw: np.ndarray) -> tuple[np.ndarray, bool, dict]:
        """Simulate one step without building an observation: (per-home reward, truncated, info).
        Shared by the centralized, multi-agent and PettingZoo views."""
        # the heat-pump mode of the step about to be simulated, under its true conditions (only the terminal
        # value needs it)
        self.fleet.reveal()
        heating = self.fleet.thermostat.heating.copy() if self._stored_prev is not None else None
        out = self.opted_out_homes()
        if out is not None:  # occupants who opted out: their devices run under their own control (NaN)
            setpoints_kw = np.array(setpoints_kw, dtype=np.float64)
            setpoints_kw[:, out] = np.nan
        outcome = self.fleet.apply(setpoints_kw)
        self._steps += 1
        truncated = self._steps >= self.episode_steps
        if truncated:  # EVs leaving exactly at the horizon: their unmet energy counts like any departure
            outcome.costs["ev_unmet_kwh"] = outcome.costs["ev_unmet_kwh"] + self.fleet.pending_ev_unmet()
            outcome.ev_required_kwh_departed += self.fleet.pending_ev_required()
        reward_home, info = self._score(outcome)
        if self._stored_prev is not None:
            # the terminal value paid as it accrues: each step's change of stored energy at the terminal
            # price, building heat signed by this step's mode (envs.terminal); the credit lands on the step
            # that charged or drained storage instead of on the last one.
            # With a learner's discount gamma < 1 the step pays gamma * Phi(s') - Phi(s) (shaping exact for that
            # discount); the KPI keeps the scored, undiscounted value.
            other, building = stored_energy_parts(self.fleet)
            sign = np.where(heating, 1.0, -1.0)
            prev_other, prev_building = self._stored_prev
            price = self._terminal_price_home
            gain = price * ((other - prev_other) + sign * (building - prev_building))
            g = self.config.shaping_gamma
            shaped = gain if g == 1.0 else price * ((g * other - prev_other) + sign * (g * building - prev_building))
            last = len(self._potential_price) - 1  # stepped past the horizon: the terminal price from there on
            p0, p1 = self._potential_price[min(self._steps - 1, last)], self._potential_price[min(self._steps, last)]
            if not np.all((p0 == price) & (p1 == price)):  # the battery's energy valued at another potential price
                battery = battery_stored_kwh(self.fleet)
                shaped = shaped + (g * (p1 - price) * battery - (p0 - price) * self._battery_prev)
                self._battery_prev = battery
            self._stored_prev = (other, building)
            reward_home = reward_home + shaped
            self._terminal_value += float(gain.sum())
            info["reward_per_home"] = reward_home
        if truncated:
            info["kpis"] = self.kpis()
        return reward_home, truncated, info

    # ----- helpers ----------------------------------------------------------------------------
    def _score(self, outcome: StepOutcome) -> tuple[np.ndarray, dict]:
        reward = -outcome.degradation_cost
        for task in self.tasks:
            reward = reward + task.reward(self.fleet, outcome)
        cost_totals = {k: float(v.sum(dtype=np.float64)) for k, v in outcome.costs.items()}
        for w, k in zip(self._weights, COST_NAMES):
            if w > 0.0 and cost_totals[k] > 0.0:
                reward = reward - w * outcome.costs[k]
        agg = self._kpi.update(outcome, cost_totals)
        info: dict[str, Any] = {
            "aggregate_kw": agg, "default_aggregate_kw": float(outcome.default_net_kw.sum(dtype=np.float64)),
            "cost": cost_totals, "costs": outcome.costs, "reward_per_home": reward,
            "action_stats": {"nonfinite": self.fleet.action_stats.nonfinite,
                             "clipped": self.fleet.action_stats.clipped},
        }
        for task in self.tasks:
            info.update(task.step_info())
        return reward, info

    def _observe(self) -> np.ndarray:
        if self.clocks > 1:
            raise TypeError(f"{type(self).__name__} with {self.clocks} fleets (fleet_seeds) has no centralized "
                            "observation: observe per home (VppHomeBatchEnv(fleets=K), agent_observations())")
        obs = np.empty(self.observation_space.shape, dtype=np.float32)  # fresh: callers may keep it
        n_home = self.n * len(HOME_FEATURES)
        self._obs.build_home(self.fleet.default_net_kw, out=obs[:n_home].reshape(self.n, len(HOME_FEATURES)))
        obs[n_home:] = self.global_observation()
        return obs

    def opted_out_homes(self) -> np.ndarray | None:
        """(N,) bool: homes whose occupant opted out of the upcoming step's event (their devices follow their own
        control whatever the policy or the shield asks), or None."""
        mask = None
        for task in self.tasks:
            out = task.own_control_homes()
            if out is not None:
                mask = out if mask is None else (mask | out)
        return mask

    def task(self, name: str):
        """The scenario's task called ``name`` (``KeyError`` listing them if it has none)."""
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(f"the scenario has no task {name!r}; it has {[t.name for t in self.tasks]}")

    def observe(self) -> np.ndarray:
        """The centralized observation of the current step, rebuilt from the fleet as it is now (after a
        dispatcher put telemetry into its twin, say): the vector ``step`` returns."""
        return self._observe()

    def home_observation(self) -> np.ndarray:
        """(N, F) per-home features for the current step (a view reused between steps)."""
        return self._obs.build_home(self.fleet.default_net_kw)

    def global_observation(self) -> np.ndarray:
        """(G,) global features: time, weather, prices, aggregate load and every task's signals ((K, G): one row
        per fleet, with several fleets)."""
        parts = [self._obs.build_globals()] + [t.observation(self.fleet) for t in self.tasks]
        return np.concatenate(parts, axis=-1).astype(np.float32)

    def agent_observations(self) -> np.ndarray:
        """(N, F + G) float32: row i is what home i sees (its features, then the global ones);
        a fresh array each call, so rows handed out as views stay valid."""
        home = self.home_observation()
        glob = self.global_observation()
        out = np.empty((self.n, home.shape[1] + glob.shape[-1]), dtype=np.float32)
        out[:, : home.shape[1]] = home
        out[:, home.shape[1]:] = self.fleet.per_home(glob)
        return out

    def terminal_value_settings(self) -> tuple[float, np.ndarray] | None:
        """(price $/kWh, stored energy per home at the episode start) of the terminal value, for planners that
        optimise the same objective (the oracle); None when the scenario does not price energy. With several
        fleets in one pass the price is per fleet, (K,) (planners refuse such an env)."""
        if self._stored0 is None:
            return None
        return self._terminal_price, self._stored0

    def kpis(self) -> dict[str, float]:
        """KPIs of the episode so far (fleet totals, the mean over the fleets with several; tasks' KPIs
        included)."""
        out = self._kpi.kpis()  # with several fleets: the mean over them, like every total below
        k = self.clocks
        out["terminal_value"] = self._terminal_value / k
        out["nonfinite_actions"] = float(self.fleet.action_stats.nonfinite) / k  # NaN/inf entries, acted on as 0
        out["clipped_actions"] = float(self.fleet.action_stats.clipped) / k  # entries outside [-1, 1]
        out["energy_cost_adjusted"] = out["energy_cost"] - out["terminal_value"]
        for task in self.tasks:
            out.update(task.kpis())
        return out
