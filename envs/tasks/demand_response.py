"""Demand response: events with a committed kW reduction against a baseline.

Baseline: what the fleet would have drawn this step with every device left to its own control
(the env computes it exactly every step). Unlike a meter-before/after baseline it cannot be
inflated by raising load before the event; pre-conditioning before an event lowers it, so
the credited reduction is conservative.
"""

from __future__ import annotations

import numpy as np

from ..fleet import Fleet, StepOutcome
from .base import Task, check_ranges, split_by_weight


class DemandResponse(Task):
    """Events of ``duration_h`` starting uniformly in ``start_window_h`` on a share of days.

    Reward during an event: ``credit_per_kwh`` for each kWh below the baseline (per home, signed)
    minus ``shortfall_penalty_per_kwh`` for each kWh the fleet falls short of its commitment
    (split across homes by import).
    """

    name = "demand_response"
    obs_names = ("dr_event_active", "dr_hours_to_event", "dr_commit_per_home_kw", "dr_last_delivered_per_home_kw")

    def __init__(self, commit_kw_per_home: float = 0.5, event_probability: float = 1.0,
                 start_window_h: tuple[float, float] = (16.0, 19.0), duration_h: float = 2.0,
                 credit_per_kwh: float = 0.5, shortfall_penalty_per_kwh: float = 1.0) -> None:
        check_ranges("DemandResponse", commit_kw_per_home=(commit_kw_per_home, 0.0, 100.0),
                     event_probability=(event_probability, 0.0, 1.0), duration_h=(duration_h, 0.0, 24.0),
                     credit_per_kwh=(credit_per_kwh, 0.0, 1000.0),
                     shortfall_penalty_per_kwh=(shortfall_penalty_per_kwh, 0.0, 1000.0))
        if not 0.0 <= start_window_h[0] <= start_window_h[1] < 24.0:
            raise ValueError(f"DemandResponse.start_window_h must satisfy 0 <= low <= high < 24, got {start_window_h}")
        self.commit_kw_per_home = commit_kw_per_home
        self.event_probability = event_probability
        self.start_window_h = start_window_h
        self.duration_h = duration_h
        self.credit_per_kwh = credit_per_kwh
        self.shortfall_penalty_per_kwh = shortfall_penalty_per_kwh

    def reset(self, fleet: Fleet, episode_steps: int, rng: np.random.Generator) -> None:
        super().reset(fleet, episode_steps, rng)
        self.commit_kw = self.commit_kw_per_home * fleet.n
        t_s = fleet.seconds + np.arange(episode_steps + 1) * fleet.dt_s  # step start times
        day = t_s // 86400
        days = np.unique(day)
        happens = rng.random(len(days)) < self.event_probability
        start = days * 86400 + rng.uniform(*self.start_window_h, len(days)) * 3600
        end = start + self.duration_h * 3600
        d = np.searchsorted(days, day)
        self.active = happens[d] & (t_s >= start[d]) & (t_s < end[d])  # (episode_steps + 1,)
        nxt = np.full(len(t_s), np.inf)
        idx = np.flatnonzero(self.active)
        if len(idx):
            pos = np.searchsorted(idx, np.arange(len(t_s)))
            ok = pos < len(idx)
            nxt[ok] = (idx[pos[ok]] - np.arange(len(t_s))[ok]) * fleet.dt_h
        self.hours_to_event = np.minimum(nxt, 24.0)
        self.delivered_kw = 0.0
        self.delivered_kwh = self.committed_kwh = self.shortfall_kwh = 0.0
        self.event_steps = 0

    def observation(self, fleet: Fleet) -> np.ndarray:
        t = min(self.t, self.episode_steps)
        return np.array([float(self.active[t]), self.hours_to_event[t] / 24.0, self.commit_kw_per_home,
                         self.delivered_kw / self.n])

    def reward(self, fleet: Fleet, outcome: StepOutcome) -> np.ndarray:
        active = bool(self.active[min(self.t, self.episode_steps)])
        self.t += 1
        if not active:
            self.delivered_kw = 0.0
            return np.zeros(self.n)
        reduction = outcome.default_net_kw - outcome.net_kw
        self.delivered_kw = float(reduction.sum(dtype=np.float64))
        shortfall = max(self.commit_kw - self.delivered_kw, 0.0)
        self.event_steps += 1
        self.committed_kwh += self.commit_kw * self.dt_h
        self.delivered_kwh += min(max(self.delivered_kw, 0.0), self.commit_kw) * self.dt_h
        self.shortfall_kwh += shortfall * self.dt_h
        r = self.credit_per_kwh * reduction * self.dt_h
        if shortfall > 0:
            r -= split_by_weight(self.shortfall_penalty_per_kwh * shortfall * self.dt_h,
                                 np.maximum(outcome.net_kw, 0.0))
        return r

    def kpis(self) -> dict[str, float]:
        perf = self.delivered_kwh / self.committed_kwh if self.committed_kwh > 0 else float("nan")
        return {"dr_event_hours": self.event_steps * self.dt_h, "dr_committed_kwh": self.committed_kwh,
                "dr_delivered_kwh": self.delivered_kwh, "dr_shortfall_kwh": self.shortfall_kwh,
                "dr_performance": perf}

    def step_info(self) -> dict[str, float]:
        return {"dr_event_active": float(self.active[min(self.t, self.episode_steps)]),
                "dr_delivered_kw": self.delivered_kw, "dr_commit_kw": self.commit_kw}
