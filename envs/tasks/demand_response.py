"""Demand response: events with a committed kW reduction, paid against a customer baseline load (CBL).

Grid operators measure a DR reduction against a baseline computed from *metered history* by a published
rule (``envs.customer_baselines``: PJM High 4 of 5 with its symmetric additive adjustment, PJM Same Day
3 + 2, PJM Match Day, CAISO 10-in-10, NYISO CBL), not against what the simulator knows the homes would have drawn: that
counterfactual cannot be metered, and a policy that sets homes back before an event inflates it. The
metered history is the homes' own-control load on the days before the episode (simulated once at reset,
``Fleet.simulate_own_control``) followed by the episode's own metered load, so load raised in an adjustment
window raises the baseline exactly as it would in a real programme. The counterfactual reduction is still
reported (``dr_counterfactual_kwh``) beside the credited one, so a user sees credit a policy did not deliver.

Each event is settled once its baseline is final and its load metered (at the event's end; for Same Day
3 + 2 after its post-event window; for Match Day at the end of the event day): the credit ``credit_per_kwh x (CBL - metered)`` per home and step,
and ``shortfall_penalty_per_kwh`` for each kWh the fleet falls short of its commitment (split across homes
by import), are paid in that step's reward.
"""

from __future__ import annotations

import datetime as dt
import inspect
from dataclasses import dataclass

import numpy as np

from .. import customer_baselines as cbl
from ..fleet import Fleet, StepOutcome
from .base import Task, check_ranges, split_by_weight

#: calendar days of metered history each method needs before an event (its like-day windows)
LOOKBACK_DAYS = {"pjm_high_4_of_5": 9, "pjm_same_day_3_2": 1, "pjm_match_day": 14, "caiso_10_in_10": 14,
                 "nyiso_cbl": 18}


#: what a method relaxes when the simulated history holds too few eligible days (PJM's own fallback for that
#: case is not implemented in ``customer_baselines``): keep low-usage days / accept fewer like days
#: (no low-usage screen: a threshold of -inf or +inf times a reference that may be negative on a net-exporting fleet)
FALLBACK_OPTIONS = {"pjm_high_4_of_5": ({"low_usage_fraction": -np.inf}, {"low_usage_fraction": np.inf}),
                    "nyiso_cbl": ({"low_usage_fraction": -np.inf}, {"low_usage_fraction": np.inf}),
                    "caiso_10_in_10": ({"min_days": 1},), "pjm_same_day_3_2": (), "pjm_match_day": ({"n_days": 1},)}


@dataclass(frozen=True)
class EventRecord:
    """One settled event as a programme settles it, per home (N,): the kWh each home delivered against its share
    of the CBL (negative: it drew more), and whether its occupant opted out (its devices then ran under their own
    control for the whole event)."""

    date: dt.date  # the event's calendar day (the data's calendar)
    start_h: float  # local hour the event starts
    hours: float  # duration, h
    baseline_kwh: np.ndarray  # (N,) each home's CBL over the event
    metered_kwh: np.ndarray  # (N,) each home's metered import over the event
    opted_out: np.ndarray  # (N,) bool

    @property
    def delivered_kwh(self) -> np.ndarray:
        return self.baseline_kwh - self.metered_kwh


@dataclass
class _Event:
    day: int  # episode day index (0 = the episode's first calendar day)
    steps: np.ndarray  # episode steps of the event
    start: int  # interval of the day where it starts
    end: int  # one past its last interval
    settle_at: int  # episode step after which the baseline is final and the load metered
    settled: bool = False


class DemandResponse(Task):
    """Events of ``duration_h`` starting uniformly in ``start_window_h`` on a share of (week)days.

    :param baseline: the customer baseline method (``envs.customer_baselines.METHODS``).
    :param weekdays_only: events on weekdays only (as most programmes call them).
    :param opt_out_probability: chance that a home's occupant opts out of an event (drawn per home and event at
        reset). An opted-out home's devices follow their own control for the whole event, whatever the policy
        asks; its load still counts in the fleet's metered reduction, and programmes settle it as an opt-out.
    """

    name = "demand_response"
    obs_names = ("dr_event_active", "dr_hours_to_event", "dr_commit_per_home_kw", "dr_last_delivered_per_home_kw")

    def __init__(self, commit_kw_per_home: float = 0.5, event_probability: float = 1.0,
                 start_window_h: tuple[float, float] = (16.0, 19.0), duration_h: float = 2.0,
                 credit_per_kwh: float = 0.5, shortfall_penalty_per_kwh: float = 1.0,
                 baseline: str = "pjm_high_4_of_5", weekdays_only: bool = True,
                 opt_out_probability: float = 0.0) -> None:
        check_ranges("DemandResponse", commit_kw_per_home=(commit_kw_per_home, 0.0, 100.0),
                     event_probability=(event_probability, 0.0, 1.0), duration_h=(duration_h, 0.0, 24.0),
                     credit_per_kwh=(credit_per_kwh, 0.0, 1000.0),
                     shortfall_penalty_per_kwh=(shortfall_penalty_per_kwh, 0.0, 1000.0),
                     opt_out_probability=(opt_out_probability, 0.0, 1.0))
        if not 0.0 <= start_window_h[0] <= start_window_h[1] < 24.0:
            raise ValueError(f"DemandResponse.start_window_h must satisfy 0 <= low <= high < 24, got {start_window_h}")
        if baseline not in LOOKBACK_DAYS:
            raise ValueError(f"DemandResponse.baseline must be one of {sorted(LOOKBACK_DAYS)}, got {baseline!r}")
        if start_window_h[1] + duration_h > 24.0:
            raise ValueError(f"DemandResponse: an event must end by midnight (its baseline is a day's), got "
                             f"start_window_h={start_window_h} and duration_h={duration_h}")
        before_h = 1.0 if baseline in ("pjm_same_day_3_2", "pjm_match_day") else 4.0  # the adjustment window before the event
        if start_window_h[0] < before_h:
            raise ValueError(f"DemandResponse.start_window_h must start at >= {before_h:g} h with baseline={baseline} "
                             f"(its day-of window lies before the event, on the same day), got {start_window_h}")
        if baseline == "pjm_same_day_3_2" and start_window_h[1] + duration_h + 3.0 > 24.0:
            raise ValueError(f"DemandResponse: with pjm_same_day_3_2 an event must end by 21:00 (its baseline reads "
                             f"the 3 h after it), got start_window_h={start_window_h}, duration_h={duration_h}")
        if not weekdays_only and baseline != "pjm_same_day_3_2":
            raise ValueError(f"DemandResponse.weekdays_only=false needs weekend baselines from weeks of history; "
                             f"only pjm_same_day_3_2 supports weekend events here, got baseline={baseline}")
        self.commit_kw_per_home = commit_kw_per_home
        self.event_probability = event_probability
        self.start_window_h = start_window_h
        self.duration_h = duration_h
        self.credit_per_kwh = credit_per_kwh
        self.shortfall_penalty_per_kwh = shortfall_penalty_per_kwh
        self.baseline = baseline
        self.weekdays_only = weekdays_only
        self.opt_out_probability = opt_out_probability
        self.history_days = LOOKBACK_DAYS[baseline]  # days of metered history read before the episode (splits)

    # ----- episode set-up ---------------------------------------------------------------------
    def reset(self, fleet: Fleet, episode_steps: int, rng: np.random.Generator) -> None:
        super().reset(fleet, episode_steps, rng)
        if 86400 % fleet.dt_s or 3600 % fleet.dt_s or fleet.dt_s < 60:
            raise ValueError(f"DemandResponse settles against a customer baseline of interval data: dt_s must divide "
                             f"3600 and be >= 60 s, got {fleet.dt_s}")
        self.commit_kw = self.commit_kw_per_home * fleet.n
        self.per_day = fleet.steps_per_day
        self._sample_events(fleet, episode_steps, rng)
        self._history_setup(fleet, rng)
        self._opt_outs(fleet, rng)
        self.records: list[EventRecord] = []
        self._calendar_day0 = fleet.profiles.start_date() + dt.timedelta(days=int(fleet.start_s // 86400))
        self.delivered_kw = 0.0
        self.delivered_kwh = self.committed_kwh = self.shortfall_kwh = 0.0
        self.credited_kwh = self.counterfactual_kwh = 0.0
        self.event_steps = 0
        self.unsettled_events = 0
        self.fallbacks = 0
        self._cbl_now: np.ndarray | None = None

    def _sample_events(self, fleet: Fleet, episode_steps: int, rng: np.random.Generator) -> None:
        t_s = fleet.seconds + np.arange(episode_steps + 1) * fleet.dt_s  # step start times
        day = t_s // 86400
        days = np.unique(day)
        weekday = (fleet.profiles.start_weekday + days) % 7
        happens = rng.random(len(days)) < self.event_probability
        if self.weekdays_only:
            happens &= weekday < 5
        start = days * 86400 + rng.uniform(*self.start_window_h, len(days)) * 3600
        end = start + self.duration_h * 3600
        d = np.searchsorted(days, day)
        self.active = happens[d] & (t_s >= start[d]) & (t_s < end[d])  # (episode_steps + 1,)
        self.active[episode_steps:] = False
        idx = np.flatnonzero(self.active)
        first_day = int(fleet.start_s // 86400)
        self._first_day = first_day
        self._day_type = lambda absolute_day: cbl.WEEKDAY if (fleet.profiles.start_weekday + absolute_day) % 7 < 5 \
            else (cbl.SATURDAY if (fleet.profiles.start_weekday + absolute_day) % 7 == 5 else cbl.SUNDAY)
        self.events: list[_Event] = []
        offset = (fleet.start_s % 86400) // fleet.dt_s  # intervals of the first day before the episode
        for steps in np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1) if len(idx) else []:
            ev_day = int((fleet.start_s + steps[0] * fleet.dt_s) // 86400) - first_day
            start_iv = int(steps[0] + offset - ev_day * self.per_day)
            end_iv = start_iv + len(steps)
            settle = int(steps[-1])
            if self.baseline == "pjm_same_day_3_2":  # the post-event window: [end + 1 h, end + 3 h)
                settle = int(steps[-1] + 3 * round(3600 / fleet.dt_s))
            elif self.baseline == "pjm_match_day":  # matched on the whole day's other hours: final at midnight
                settle = int((ev_day + 1) * self.per_day - offset - 1)
            if settle >= episode_steps:  # its baseline would be final only after the episode: not called
                self.active[steps] = False
                continue
            self.events.append(_Event(ev_day, steps, start_iv, end_iv, settle))
        self._hours_to_event(fleet)

    def _hours_to_event(self, fleet: Fleet) -> None:
        idx = np.flatnonzero(self.active)
        n = len(self.active)
        nxt = np.full(n, np.inf)
        if len(idx):
            pos = np.searchsorted(idx, np.arange(n))
            ok = pos < len(idx)
            nxt[ok] = (idx[pos[ok]] - np.arange(n)[ok]) * fleet.dt_h
        self.hours_to_event = np.minimum(nxt, 24.0)

    def _history_setup(self, fleet: Fleet, rng: np.random.Generator) -> None:
        """Own-control metered load of the lookback days and of the first day before the episode starts."""
        lookback = LOOKBACK_DAYS[self.baseline] if self.events else 0
        before = int((fleet.start_s % 86400) // fleet.dt_s)
        steps = lookback * self.per_day + before
        start_s = fleet.start_s - steps * fleet.dt_s
        past = fleet.simulate_own_control(start_s, steps, rng) if steps else np.zeros((0, fleet.n))
        self._lookback = lookback
        self._metered = np.full((steps + self.episode_steps + self.per_day, fleet.n), np.nan)  # day-aligned record
        self._metered[:steps] = past
        self._origin = steps  # row of the episode's first step

    def _opt_outs(self, fleet: Fleet, rng: np.random.Generator) -> None:
        """Per event and home, whether its occupant opts out; ``_own_control[t]``: homes out at step t. Drawn only
        when opt-outs are configured, so the episode's other draws do not change."""
        self._out = np.zeros((len(self.events), fleet.n), bool)
        if self.opt_out_probability > 0.0:
            self._out = rng.random((len(self.events), fleet.n)) < self.opt_out_probability
        self._out_at = {int(s): k for k, e in enumerate(self.events) for s in e.steps}

    def own_control_homes(self) -> np.ndarray | None:
        """Homes whose occupant opted out of the event of the upcoming step (their devices follow their own
        control), or None."""
        k = self._out_at.get(self.t)
        return None if k is None or not self._out[k].any() else self._out[k]

    # ----- per step ---------------------------------------------------------------------------
    def observation(self, fleet: Fleet) -> np.ndarray:
        t = min(self.t, self.episode_steps)
        return np.array([float(self.active[t]), self.hours_to_event[t] / 24.0, self.commit_kw_per_home,
                         self.delivered_kw / self.n])

    def reward(self, fleet: Fleet, outcome: StepOutcome) -> np.ndarray:
        t = min(self.t, self.episode_steps)
        active = bool(self.active[t])
        self.t += 1
        self._metered[self._origin + t] = outcome.net_kw
        r = np.zeros(self.n)
        self.delivered_kw = 0.0
        if active:
            self.event_steps += 1
            self.committed_kwh += self.commit_kw * self.dt_h
            self.counterfactual_kwh += float((outcome.default_net_kw - outcome.net_kw).sum(dtype=np.float64)) * self.dt_h
            if self._cbl_now is not None:  # a day-matching baseline is known once its adjustment window closed
                first_row, fleet_cbl = self._cbl_now
                self.delivered_kw = float(fleet_cbl[self._origin + t - first_row]
                                          - outcome.net_kw.sum(dtype=np.float64))
        last = self.t >= self.episode_steps
        for event in self.events:
            if event.settled:
                continue
            if event.steps[0] == self.t and self.baseline not in ("pjm_same_day_3_2", "pjm_match_day"):
                # a baseline final before the event
                self._cbl_now = ((self._lookback + event.day) * self.per_day,
                                 self._baseline_of(event, count=False).sum(axis=1))
            if t >= event.settle_at:
                r += self._settle(event, fleet)
        if last:
            self.unsettled_events += sum(1 for e in self.events if not e.settled)
        return r

    # ----- settlement -------------------------------------------------------------------------
    # ``_metered`` row 0 is midnight of the first lookback day; episode day k starts at row (lookback + k) * per_day

    def history_and_event_day(self, event: _Event) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(history (days, intervals, N), day types, excluded, event-day load (intervals, N)) of an event:
        the metered load of every day before the event day, oldest first, and of the event day itself."""
        days = self._lookback + event.day
        history = self._metered[:days * self.per_day].reshape(days, self.per_day, self.n)
        absolute = self._first_day - self._lookback + np.arange(days)
        day_type = np.array([self._day_type(int(d)) for d in absolute], dtype=int)
        excluded = np.zeros(days, bool)
        for other in self.events:  # earlier event days are not baseline days
            if other.day < event.day:
                excluded[self._lookback + other.day] = True
        today = self._metered[days * self.per_day:(days + 1) * self.per_day]
        return history, day_type, excluded, today

    def _fleet_baseline(self, history, day_type, excluded, event_day_type, today, event: _Event,
                        count: bool = True):
        """The method on the fleet's load; with too few eligible days in the history, its relaxed form
        (counted in ``dr_baseline_fallbacks``)."""
        args = (self.baseline, history, day_type, excluded, event_day_type, today, event.start, event.end)
        try:
            return cbl.compute_baseline(*args)
        except ValueError as err:
            if "too few" not in str(err):
                raise
            self.fallbacks += int(count)
            for options in FALLBACK_OPTIONS[self.baseline]:
                try:
                    return cbl.compute_baseline(*args, **options)
                except ValueError:
                    continue
            raise

    def _baseline_of(self, event: _Event, count: bool = True) -> np.ndarray:
        """The event day's CBL (intervals, N) by the configured method, per home.

        The VPP's registration is the aggregate (as an aggregator's is): the method selects its days and
        sizes its day-of adjustment on the fleet's metered load. Each home's share uses the same days and
        the same adjustment rule on its own load (its own additive adjustment; the fleet's ratio), so the
        homes' baselines sum to the fleet's exactly."""
        history, day_type, excluded, today = self.history_and_event_day(event)
        fleet_base, info = self._fleet_baseline(history.sum(axis=2, keepdims=True), day_type, excluded,
                                                self._day_type(self._first_day + event.day),
                                                today.sum(axis=1, keepdims=True), event, count)
        if self.baseline == "pjm_same_day_3_2":
            windows = np.concatenate([np.arange(*w) for w in info.adjustment_intervals])
            base = np.full(today.shape, np.nan)
            base[event.start:event.end] = today[windows].mean(axis=0)
            return base
        selected = info.selected_days[:, 0]
        base = history[selected].mean(axis=0)  # (intervals, N): each home's load on the fleet's selected days
        if info.adjustment_kind == "additive":
            lo, hi = info.adjustment_intervals[0]
            base = base + (today[lo:hi] - base[lo:hi]).mean(axis=0)
        elif info.adjustment_kind == "multiplicative":
            base = base * float(info.adjustment[0])
        return base

    def _settle(self, event: _Event, fleet: Fleet) -> np.ndarray:
        event.settled = True
        base = self._baseline_of(event)[event.start:event.end]  # (event steps, N)
        metered = self._metered[(self._lookback + event.day) * self.per_day + np.arange(event.start, event.end)]
        self.records.append(EventRecord(self._calendar_day0 + dt.timedelta(days=event.day), event.start * self.dt_h,
                                        len(event.steps) * self.dt_h, base.sum(axis=0) * self.dt_h,
                                        metered.sum(axis=0) * self.dt_h,
                                        self._out[self.events.index(event)].copy()))
        reduction = base - metered  # per home and step, kW
        fleet_reduction = reduction.sum(axis=1)
        shortfall = np.maximum(self.commit_kw - fleet_reduction, 0.0)
        self.credited_kwh += float(fleet_reduction.sum()) * self.dt_h
        self.delivered_kwh += float(np.minimum(np.maximum(fleet_reduction, 0.0), self.commit_kw).sum()) * self.dt_h
        self.shortfall_kwh += float(shortfall.sum()) * self.dt_h
        r = self.credit_per_kwh * reduction.sum(axis=0) * self.dt_h
        for k in np.flatnonzero(shortfall > 0):
            r -= split_by_weight(self.shortfall_penalty_per_kwh * shortfall[k] * self.dt_h,
                                 np.maximum(metered[k], 0.0))
        return r

    # ----- what a planner sees -----------------------------------------------------------------
    def plan_terms(self, start: int, steps: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]:
        """The fleet CBL of every unsettled event as an affine function of the planned fleet load, for an LP
        over episode steps [start, start + steps): per event (E, const, W, weight) with plan-relative event
        steps E, CBL_e = const_e + weight * sum of the planned fleet load over plan-relative steps W.

        Exact for PJM High 4 of 5 (additive adjustment) and PJM Same Day 3 + 2 once the baseline days are
        metered (events on the episode's first day, or later events planned after their CBL days); loads
        already metered enter ``const``. Where it is not exact, :meth:`plan_gap_bound` bounds the error: a
        capped ratio adjustment (CAISO, NYISO) is not affine, so the plan uses the unadjusted baseline; Match
        Day picks its days by the event day's own load, so the plan uses the days most like a typical day; for
        an event whose CBL days are not yet metered the unmetered days count as 0 kW in the selection."""
        return [terms for terms, _ in (self._plan_event(e, start, steps) for e in self._events_in(start, steps))]

    def plan_gap_bound(self, start: int, steps: int) -> float:
        """$ bound on |env return - LP objective| from the DR terms of :meth:`plan_terms`, for any plan.

        Per event step, the true fleet CBL differs from the planned one by at most delta (ratio methods: cap x
        |unadjusted CBL|, the factor lying in [1 - cap, 1 + cap]; Match Day: the spread between the means of the
        n highest and the n lowest candidate days at that interval, since any n-day mean lies between them); the
        credit then moves by credit x delta x dt and the shortfall penalty by at most penalty x delta x dt. So
        an oracle planning on these terms scores within 2 x this bound of the best plan. ``inf`` where the CBL
        days are not metered when planning (a later day of a multi-day episode), 0 where the terms are exact."""
        total = 0.0
        for event in self._events_in(start, steps):
            _, delta = self._plan_event(event, start, steps)
            total += (self.credit_per_kwh + self.shortfall_penalty_per_kwh) * self.dt_h * float(np.sum(delta))
        return total

    def _events_in(self, start: int, steps: int) -> list[_Event]:
        return [e for e in self.events if not e.settled
                and np.any((e.steps >= start) & (e.steps < start + steps))]

    def _plan_event(self, event: _Event, start: int, steps: int):
        """((E, const, W, weight), delta per planned event step) of one event (see :meth:`plan_terms`)."""
        e_abs = event.steps[(event.steps >= start) & (event.steps < start + steps)]
        history, day_type, excluded, _ = self.history_and_event_day(event)
        metered = (self._lookback + event.day) * self.per_day <= self._origin + start
        history = np.nan_to_num(history.sum(axis=2, keepdims=True))  # unmetered episode days: 0 (see above)
        like_day_proxy = history[~excluded].mean(axis=0)  # a typical day: what Match Day's selection is planned on
        _, info = self._fleet_baseline(history, day_type, excluded, self._day_type(self._first_day + event.day),
                                       like_day_proxy, event, count=False)  # planning is not settlement
        unadjusted = info.unadjusted[:, 0]
        day_row = (self._lookback + event.day) * self.per_day
        interval = lambda step: step + self._origin - day_row  # episode step -> interval of the event day
        if info.adjustment_kind == "additive" or self.baseline == "pjm_same_day_3_2":
            window_iv = np.concatenate([np.arange(*w) for w in info.adjustment_intervals])
        else:
            window_iv = np.zeros(0, int)
        window_abs = window_iv + day_row - self._origin  # episode steps
        weight = 1.0 / len(window_iv) if len(window_iv) else 0.0
        known = window_abs < start  # already metered (or before the episode)
        metered_sum = self._metered[window_abs[known] + self._origin].sum() if known.any() else 0.0
        if self.baseline == "pjm_same_day_3_2":
            const = np.full(len(e_abs), weight * metered_sum)
        elif info.adjustment_kind == "additive":
            const = unadjusted[interval(e_abs)] - unadjusted[window_iv].mean() + weight * metered_sum
        else:
            const = unadjusted[interval(e_abs)]
            weight = 0.0
        future = window_abs[~known] - start
        terms = (e_abs - start, const, future[future < steps] if weight else future[:0], weight)
        beyond = window_abs[~known] - start >= steps  # window steps past the horizon: not in the plan's terms
        if beyond.any() or (event.steps >= start + steps).any():
            delta = np.full(len(e_abs), np.inf)
        elif self.baseline == "pjm_same_day_3_2":
            delta = np.zeros(len(e_abs))
        elif not metered:
            delta = np.full(len(e_abs), np.inf)
        elif info.adjustment_kind == "multiplicative":
            cap = inspect.signature(cbl.get_baseline_method(self.baseline)).parameters["cap"].default
            delta = cap * np.abs(unadjusted[interval(e_abs)])
        elif self.baseline == "pjm_match_day":
            candidates = np.sort(history[info.window_days[:, 0]][:, interval(e_abs), 0], axis=0)
            k = int(info.selected_days[:, 0].sum())
            delta = candidates[-k:].mean(axis=0) - candidates[:k].mean(axis=0)
        else:
            delta = np.zeros(len(e_abs))
        return terms, delta

    def event_records(self) -> list[EventRecord]:
        """The events settled so far this episode, oldest first (what a programme's settlement reads)."""
        return list(self.records)

    def kpis(self) -> dict[str, float]:
        perf = self.delivered_kwh / self.committed_kwh if self.committed_kwh > 0 else float("nan")
        return {"dr_event_hours": self.event_steps * self.dt_h, "dr_committed_kwh": self.committed_kwh,
                "dr_delivered_kwh": self.delivered_kwh, "dr_shortfall_kwh": self.shortfall_kwh,
                "dr_performance": perf, "dr_credited_kwh": self.credited_kwh,
                "dr_counterfactual_kwh": self.counterfactual_kwh, "dr_unsettled_events": float(self.unsettled_events),
                "dr_baseline_fallbacks": float(self.fallbacks)}

    def step_info(self) -> dict[str, float]:
        return {"dr_event_active": float(self.active[min(self.t, self.episode_steps)]),
                "dr_delivered_kw": self.delivered_kw, "dr_commit_kw": self.commit_kw}
