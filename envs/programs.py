"""What a participant earns from a demand-flexibility programme: payment rules applied to metered event results.

A programme is a set of rules, each paying per participant from the same per-event results (the kWh a home
delivered against its baseline in each event, the event's hours, its season and month, and whether the home
opted out). Rules with published numbers are configured in ``configs/program/<name>.yaml``, each number cited
to the programme's public description there.

* ``seasonal_capacity``: $/kW-season on the participant's average kW over all event hours of the season (an
  opt-out counts as 0 kW for its hours), with the season's event cap and window enforced (Mass Save
  ConnectedSolutions: $225/kW summer, $50/kW winter).
* ``per_kwh``: a credit per kWh delivered in each event (Octopus Saving Sessions-style), never negative.
* ``nominated_capacity``: $/kW nominated, paid only when the participant took part in at least the floor share
  of events (Maryland DRIVE Act pilots: $300/kW, >= 80 %).
* ``monthly_cap``: no participant earns more than this per calendar month from the programme (0: no cap).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class EventResults:
    """Per event (E,) and participant (E, N): what settlement reads. ``delivered_kwh`` is measured against the
    programme's baseline (negative when the home drew more than its baseline)."""

    season: np.ndarray  # (E,) str: "summer" / "winter" / "" (outside any season)
    month: np.ndarray  # (E,) int 1..12
    start_h: np.ndarray  # (E,) local hour the event starts
    hours: np.ndarray  # (E,) event duration, h
    delivered_kwh: np.ndarray  # (E, N)
    opted_out: np.ndarray  # (E, N) bool

    def __post_init__(self) -> None:
        e = len(self.hours)
        for name in ("season", "month", "start_h"):
            if len(getattr(self, name)) != e:
                raise ValueError(f"EventResults.{name} must have one entry per event ({e}), got {len(getattr(self, name))}")
        if self.delivered_kwh.ndim != 2 or self.delivered_kwh.shape[0] != e or self.opted_out.shape != \
                self.delivered_kwh.shape:
            raise ValueError(f"EventResults.delivered_kwh and opted_out must be (events, participants) = ({e}, N), got "
                             f"{self.delivered_kwh.shape} and {self.opted_out.shape}")
        if not np.all((self.hours > 0) & np.isfinite(self.hours)):
            raise ValueError("EventResults.hours must be finite and > 0")
        if not np.all((self.month >= 1) & (self.month <= 12)):
            raise ValueError("EventResults.month must be in [1, 12]")


@dataclass(frozen=True)
class Season:
    rate_per_kw: float  # $ per kW of average event performance
    max_events: int
    max_event_hours: float
    window_h: tuple[float, float]  # events lie within [start, end) local hours


@dataclass(frozen=True)
class Program:
    """A programme's payment rules (zero or absent: the rule does not apply)."""

    name: str
    seasons: dict[str, Season] = field(default_factory=dict)
    per_kwh: float = 0.0
    nominated_per_kw: float = 0.0
    nominated_kw: float = 0.0
    participation_floor: float = 0.0
    monthly_cap: float = 0.0
    citations: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name, lo, hi in (("per_kwh", 0.0, 100.0), ("nominated_per_kw", 0.0, 10_000.0), ("nominated_kw", 0.0, 1e6),
                             ("participation_floor", 0.0, 1.0), ("monthly_cap", 0.0, 1e6)):
            value = getattr(self, name)
            if not (math.isfinite(value) and lo <= value <= hi):
                raise ValueError(f"program {self.name}: {name} = {value} is outside the allowed range [{lo}, {hi}]")


def program_names() -> list[str]:
    from importlib import resources

    root = resources.files("vpprl.configs.program")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_program(name: str) -> Program:
    """A shipped programme (``configs/program/<name>.yaml``); ``ValueError`` lists them for an unknown name."""
    from importlib import resources

    from omegaconf import OmegaConf

    if name not in program_names():
        raise ValueError(f"program must be one of {program_names()}; got {name!r}")
    raw = OmegaConf.to_container(OmegaConf.create(
        resources.files("vpprl.configs.program").joinpath(f"{name}.yaml").read_text()))
    seasons = {k: Season(float(v["rate_per_kw"]), int(v["max_events"]), float(v["max_event_hours"]),
                         (float(v["window_h"][0]), float(v["window_h"][1]))) for k, v in raw.get("seasons", {}).items()}
    scalars = {k: float(raw[k]) for k in ("per_kwh", "nominated_per_kw", "nominated_kw", "participation_floor",
                                          "monthly_cap") if k in raw}
    return Program(raw["name"], seasons, citations=tuple(raw.get("citations", ())), **scalars)


def check_events(program: Program, events: EventResults) -> None:
    """Refuse results the programme could not have produced: more events in a season than its cap, an event longer
    than allowed or outside the season's window (``ValueError`` names the season, the event and the limit)."""
    for name, season in program.seasons.items():
        idx = np.flatnonzero(events.season == name)
        if len(idx) > season.max_events:
            raise ValueError(f"program {program.name}: {len(idx)} {name} events, more than its cap of {season.max_events}")
        for k in idx:
            if events.hours[k] > season.max_event_hours + 1e-9:
                raise ValueError(f"program {program.name}: {name} event {k} lasts {events.hours[k]:g} h, more than "
                                 f"{season.max_event_hours:g} h")
            lo, hi = season.window_h
            if events.start_h[k] < lo or events.start_h[k] + events.hours[k] > hi + 1e-9:
                raise ValueError(f"program {program.name}: {name} event {k} ({events.start_h[k]:g} h for "
                                 f"{events.hours[k]:g} h) falls outside the window [{lo:g}, {hi:g}) h")


def settle(program: Program, events: EventResults) -> dict[str, np.ndarray]:
    """Earnings per participant (N,) by rule, plus ``total`` after the monthly cap."""
    check_events(program, events)
    n = events.delivered_kwh.shape[1]
    delivered = np.where(events.opted_out, 0.0, events.delivered_kwh)
    out: dict[str, np.ndarray] = {}
    by_month = np.zeros((12, n))
    for name, season in program.seasons.items():
        idx = np.flatnonzero(events.season == name)
        if not len(idx):
            out[f"capacity_{name}"] = np.zeros(n)
            continue
        average_kw = delivered[idx].sum(axis=0) / events.hours[idx].sum()  # over all event hours of the season
        pay = season.rate_per_kw * np.maximum(average_kw, 0.0)
        out[f"capacity_{name}"] = pay
        last_month = int(events.month[idx].max())  # a seasonal payment is booked in the season's last event month
        by_month[last_month - 1] += pay
    if program.per_kwh:
        credit = program.per_kwh * np.maximum(delivered, 0.0)
        out["per_kwh"] = credit.sum(axis=0)
        np.add.at(by_month, events.month - 1, credit)
    if program.nominated_per_kw:
        share = (~events.opted_out).mean(axis=0) if len(events.hours) else np.zeros(n)
        pay = np.where(share >= program.participation_floor, program.nominated_per_kw * program.nominated_kw, 0.0)
        out["nominated"] = pay
        if len(events.hours):
            by_month[int(events.month.max()) - 1] += pay
    if program.monthly_cap:
        by_month = np.minimum(by_month, program.monthly_cap)
    out["total"] = by_month.sum(axis=0)
    return out
