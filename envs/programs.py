"""What a participant earns from a demand-flexibility programme: payment rules applied to metered event results.

A programme is a set of rules, each paying per participant from the same per-event results (the kWh a home
delivered against its baseline in each event, the event's hours, its season and month, and whether the home
opted out). Rules with published numbers are configured in ``configs/program/<name>.yaml``, each number cited
to the programme's public description there.

* ``seasons`` (seasonal capacity): $/kW-season on the participant's average kW over all event hours of the
  season (an opt-out counts as 0 kW for its hours), with the season's months, event cap and window enforced
  (Mass Save ConnectedSolutions: $225/kW summer, $50/kW winter).
* ``monthly_capacity_per_kw``: $/kW-month on the nominated kW, scaled by the month's performance factor (kWh
  delivered over kWh nominated in its events, in [0, 1]; an opt-out delivers 0), for each month with events.
* ``per_kwh``: an energy credit per kWh delivered in each event (Octopus Saving Sessions-style), never negative.
* ``nominated_per_kw``: $/kW nominated, paid only when the participant took part in at least the floor share
  of events (Maryland DRIVE Act pilots: $300/kW, >= 80 %).
* ``shortfall_penalty_per_kwh``: charged per kWh a participant who took part fell short of its nominated kW
  in an event (non-delivery).
* ``monthly_cap``: no participant earns more than this per calendar month from the credits above, before
  penalties (0: no cap).
* ``upfront_per_kw``: a one-off incentive per enrolled kW for handing the device's control to the VPP
  (utility-directed programmes, e.g. Green Mountain Power's), reported apart and annualised over
  ``commitment_years``.

The nominated kW is ``nominated_kw`` when set, else each participant's enrolled kW (its battery's discharge
rating, passed to :func:`settle`).
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
    months: tuple[int, ...] = ()  # calendar months of the season (1..12)


CONTROL = ("utility", "customer")

_RANGES = {"per_kwh": (0.0, 100.0), "monthly_capacity_per_kw": (0.0, 1_000.0), "nominated_per_kw": (0.0, 10_000.0),
           "nominated_kw": (0.0, 1e6), "participation_floor": (0.0, 1.0), "shortfall_penalty_per_kwh": (0.0, 100.0),
           "monthly_cap": (0.0, 1e6), "upfront_per_kw": (0.0, 100_000.0), "commitment_years": (1.0, 50.0),
           "events_per_year": (0.0, 8760.0)}


@dataclass(frozen=True)
class Program:
    """A programme's payment rules (zero or absent: the rule does not apply) and the events it calls.

    :param control: ``utility`` (the VPP directs the devices) or ``customer`` (the participant curtails).
    :param events_per_year: events the programme calls in a year, to annualise per-event credits.
    :param event_start_window_h: the DR task's event start window under this programme, local hours.
    :param event_duration_h: the DR task's event duration under this programme, h.
    :param event_baseline: the customer baseline the DR task settles on under this programme (None: the task's).
    :param currency: what the rates are paid in (``USD``, ``GBP``).
    """

    name: str
    control: str = "utility"
    seasons: dict[str, Season] = field(default_factory=dict)
    per_kwh: float = 0.0
    monthly_capacity_per_kw: float = 0.0
    nominated_per_kw: float = 0.0
    nominated_kw: float = 0.0
    participation_floor: float = 0.0
    shortfall_penalty_per_kwh: float = 0.0
    monthly_cap: float = 0.0
    upfront_per_kw: float = 0.0
    commitment_years: float = 1.0
    events_per_year: float = 0.0
    event_start_window_h: tuple[float, float] | None = None
    event_duration_h: float | None = None
    event_baseline: str | None = None
    currency: str = "USD"
    citations: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name, (lo, hi) in _RANGES.items():
            value = getattr(self, name)
            if not (math.isfinite(value) and lo <= value <= hi):
                raise ValueError(f"program {self.name}: {name} = {value} is outside the allowed range [{lo}, {hi}]")
        if self.control not in CONTROL:
            raise ValueError(f"program {self.name}: control must be one of {list(CONTROL)}, got {self.control!r}")
        taken: dict[int, str] = {}
        for season_name, season in self.seasons.items():
            for m in season.months:
                if not 1 <= m <= 12:
                    raise ValueError(f"program {self.name}: seasons.{season_name}.months must lie in [1, 12], got {m}")
                if m in taken:
                    raise ValueError(f"program {self.name}: month {m} is in seasons {taken[m]} and {season_name}")
                taken[m] = season_name

    def capacity_months(self) -> int:
        """Months a year in which a monthly capacity credit is paid: the seasons' months, else 12."""
        return sum(len(s.months) for s in self.seasons.values()) or 12

    def marginal_per_kwh(self) -> float:
        """$ the programme pays per extra kWh delivered against the baseline, when it calls its events as
        configured: the per-kWh credit, plus the seasonal rates over the seasons' event hours (a season pays average
        kW x rate = kWh x rate / its event hours once all its events are called; blended over the year), plus the monthly capacity credit over a month's
        event hours (below the nominated kW). Participation and upfront payments do not grow with kWh. The DR
        task pays this as its credit under ``program=`` (USD programmes), so training's reward carries the
        settlement's revenue, linearised: per home and kWh, not floored at 0 per event or season, and the same in
        every month (a season's own rate differs: Mass Save pays 1.25 $/kWh in summer, 3.33 in winter)."""
        value = self.per_kwh
        paying = [s for s in self.seasons.values() if s.rate_per_kw]
        if paying:  # a year's seasonal pay per kW over a year's event hours
            value += sum(s.rate_per_kw for s in paying) / sum(s.max_events * s.max_event_hours for s in paying)
        if self.monthly_capacity_per_kw and self.events_per_year and self.event_duration_h:
            per_month_hours = self.events_per_year * self.event_duration_h / self.capacity_months()
            value += self.monthly_capacity_per_kw / per_month_hours
        return value

    def task_params(self) -> dict:
        """The DR task's parameters under this programme: its event shape and baseline, its shortfall penalty (a
        retail programme without one charges none) and its marginal revenue per kWh as the credit (see
        :meth:`marginal_per_kwh`; USD programmes only)."""
        params: dict = {"shortfall_penalty_per_kwh": self.shortfall_penalty_per_kwh}
        if self.currency == "USD":  # the env's bills and costs are in USD: a credit in another currency is not added
            params["credit_per_kwh"] = self.marginal_per_kwh()
        if self.event_start_window_h is not None:
            params["start_window_h"] = list(self.event_start_window_h)
        if self.event_duration_h is not None:
            params["duration_h"] = self.event_duration_h
        if self.event_baseline is not None:
            params["baseline"] = self.event_baseline
        return params

    def check_task(self, params: dict) -> None:
        """Refuse DR task parameters whose events this programme would not call (``ValueError`` names the task
        parameter, the season and its limit)."""
        window = params.get("start_window_h")
        duration = params.get("duration_h")
        if window is None or duration is None:
            return
        for name, season in self.seasons.items():
            if duration > season.max_event_hours + 1e-9:
                raise ValueError(f"task_params.demand_response.duration_h = {duration:g} h is longer than program "
                                 f"{self.name}'s {name} events (at most {season.max_event_hours:g} h)")
            lo, hi = season.window_h
            if window[0] < lo - 1e-9 or window[1] + duration > hi + 1e-9:
                raise ValueError(f"task_params.demand_response.start_window_h = {list(window)} with duration_h = "
                                 f"{duration:g} lets events fall outside program {self.name}'s {name} window "
                                 f"[{lo:g}, {hi:g}) h")

    def season_of(self, month: int) -> str:
        """The season a calendar month belongs to ("" for none)."""
        return next((name for name, s in self.seasons.items() if month in s.months), "")

    def nominated(self, enrolled_kw: np.ndarray | None, n: int) -> np.ndarray:
        """(N,) kW each participant is nominated for: ``nominated_kw`` when set, else its enrolled kW (0 if
        none given)."""
        if self.nominated_kw > 0 or enrolled_kw is None:
            return np.full(n, self.nominated_kw)
        return np.asarray(enrolled_kw, dtype=np.float64)


def program_names() -> list[str]:
    from importlib import resources

    root = resources.files("vpprl.configs.program")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_program(name: str) -> Program:
    """A shipped programme (``configs/program/<name>.yaml``); ``ValueError`` lists them for an unknown name and
    names the field of a bad value."""
    from importlib import resources

    from omegaconf import OmegaConf

    if name not in program_names():
        raise ValueError(f"program must be one of {program_names()}; got {name!r}")
    raw = OmegaConf.to_container(OmegaConf.create(
        resources.files("vpprl.configs.program").joinpath(f"{name}.yaml").read_text()))
    unknown = set(raw) - {"name", "control", "seasons", "citations", "event", "currency", *_RANGES}
    if unknown:
        raise ValueError(f"configs/program/{name}.yaml: unknown field(s) {sorted(unknown)}")
    seasons = {k: Season(float(v["rate_per_kw"]), int(v["max_events"]), float(v["max_event_hours"]),
                         (float(v["window_h"][0]), float(v["window_h"][1])), tuple(int(m) for m in v.get("months", ())))
               for k, v in raw.get("seasons", {}).items()}
    scalars = {k: float(raw[k]) for k in _RANGES if k in raw}
    event = raw.get("event") or {}
    window = event.get("start_window_h")
    return Program(raw["name"], str(raw.get("control", "utility")), seasons,
                   event_start_window_h=None if window is None else (float(window[0]), float(window[1])),
                   event_duration_h=None if event.get("duration_h") is None else float(event["duration_h"]),
                   event_baseline=event.get("baseline"), currency=str(raw.get("currency", "USD")), citations=tuple(raw.get("citations", ())), **scalars)


def in_programme(program: Program, records: list) -> list:
    """The records of events the programme would call: for a programme with seasons, those in a season's months
    (it calls none outside them); otherwise all."""
    if not program.seasons:
        return list(records)
    return [r for r in records if program.season_of(r.date.month)]


def event_results(program: Program, records: list) -> EventResults:
    """EventResults from settled DR events (``envs.tasks.demand_response.EventRecord``: date, start_h, hours,
    delivered_kwh, opted_out), each placed in the programme's season by its month."""
    if not records:
        raise ValueError("no settled events to settle (the evaluated days had no demand-response event)")
    months = np.array([r.date.month for r in records])
    return EventResults(np.array([program.season_of(int(m)) for m in months]), months,
                        np.array([r.start_h for r in records], float), np.array([r.hours for r in records], float),
                        np.stack([r.delivered_kwh for r in records]), np.stack([r.opted_out for r in records]))


def check_events(program: Program, events: EventResults, sample: bool = False) -> None:
    """Refuse results the programme could not have produced: more events in a season than its cap, an event longer
    than allowed or outside the season's window (``ValueError`` names the season, the event and the limit).
    ``sample``: the events are a sample of seasons (pooled evaluation episodes), so the season's cap is not a
    limit on their number."""
    for name, season in program.seasons.items():
        idx = np.flatnonzero(events.season == name)
        if len(idx) > season.max_events and not sample:
            raise ValueError(f"program {program.name}: {len(idx)} {name} events, more than its cap of {season.max_events}")
        for k in idx:
            if events.hours[k] > season.max_event_hours + 1e-9:
                raise ValueError(f"program {program.name}: {name} event {k} lasts {events.hours[k]:g} h, more than "
                                 f"{season.max_event_hours:g} h")
            lo, hi = season.window_h
            if events.start_h[k] < lo - 1e-9 or events.start_h[k] + events.hours[k] > hi + 1e-9:
                raise ValueError(f"program {program.name}: {name} event {k} ({events.start_h[k]:g} h for "
                                 f"{events.hours[k]:g} h) falls outside the window [{lo:g}, {hi:g}) h")


def performance_factor(program: Program, events: EventResults, enrolled_kw: np.ndarray | None = None) -> np.ndarray:
    """(N,) kWh delivered over kWh nominated across the events, in [0, 1] (an opt-out delivers 0); NaN where
    nothing is nominated."""
    n = events.delivered_kwh.shape[1]
    nominated = program.nominated(enrolled_kw, n)
    asked = nominated * events.hours.sum()
    delivered = np.where(events.opted_out, 0.0, events.delivered_kwh).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(asked > 0, np.clip(delivered / asked, 0.0, 1.0), np.nan)


def settle(program: Program, events: EventResults, enrolled_kw: np.ndarray | None = None,
           sample: bool = False) -> dict[str, np.ndarray]:
    """Earnings per participant (N,) by rule, ``total`` (credits after the monthly cap, less penalties) and
    ``upfront`` (the one-off incentive, not in ``total``). ``sample``: see :func:`check_events`."""
    check_events(program, events, sample)
    n = events.delivered_kwh.shape[1]
    nominated = program.nominated(enrolled_kw, n)
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
    if program.monthly_capacity_per_kw:
        pay = np.zeros(n)
        for month in np.unique(events.month):
            idx = events.month == month
            asked = nominated * events.hours[idx].sum()
            with np.errstate(divide="ignore", invalid="ignore"):
                factor = np.where(asked > 0, np.clip(delivered[idx].sum(axis=0) / asked, 0.0, 1.0), 0.0)
            month_pay = program.monthly_capacity_per_kw * nominated * factor
            by_month[month - 1] += month_pay
            pay += month_pay
        out["monthly_capacity"] = pay
    if program.per_kwh:
        credit = program.per_kwh * np.maximum(delivered, 0.0)
        out["per_kwh"] = credit.sum(axis=0)
        np.add.at(by_month, events.month - 1, credit)
    if program.nominated_per_kw:
        share = (~events.opted_out).mean(axis=0) if len(events.hours) else np.zeros(n)
        pay = np.where(share >= program.participation_floor - 1e-12, program.nominated_per_kw * nominated, 0.0)
        out["nominated"] = pay
        if len(events.hours):
            by_month[int(events.month.max()) - 1] += pay
    if program.monthly_cap:
        by_month = np.minimum(by_month, program.monthly_cap)
    penalty = np.zeros(n)
    if program.shortfall_penalty_per_kwh:
        short = np.maximum(nominated * events.hours[:, None] - events.delivered_kwh, 0.0)
        penalty = program.shortfall_penalty_per_kwh * np.where(events.opted_out, 0.0, short).sum(axis=0)
        out["shortfall_penalty"] = -penalty
    out["total"] = by_month.sum(axis=0) - penalty
    out["upfront"] = program.upfront_per_kw * (np.asarray(enrolled_kw, float) if enrolled_kw is not None
                                               else np.zeros(n))
    return out


def task_params_under(program_name: str | None, task: str, params: dict | None) -> dict:
    """``task_params`` with the programme's DR event shape, baseline and credit filled in where the user did not
    set them, checked against the programme (``ValueError`` names the field). Without ``demand_response`` in
    ``task`` a programme has no events to settle: refused."""
    if program_name is None:
        return dict(params or {})
    program = load_program(program_name)
    if "demand_response" not in [t.strip() for t in task.split("+")]:
        raise ValueError(f"program={program_name} settles demand-response events: task must include "
                         f"demand_response, got task={task!r}")
    out = {k: dict(v or {}) for k, v in (params or {}).items()}
    out["demand_response"] = {**program.task_params(), **out.get("demand_response", {})}
    program.check_task(out["demand_response"])
    return out
