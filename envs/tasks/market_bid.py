"""A day-ahead market commitment: the VPP sells a load reduction in the day's dearest hours, settled as delivered.

Day ahead (at reset, for every day of the episode), the VPP submits for each step its forecast of the fleet's
load under the devices' own control and commits ``offer_kw_per_home x N`` below it in the ``bid_hours`` hours
with the highest day-ahead price. The forecast is persistence: the homes' own-control load at the same step of
the day before (simulated at reset; the VPP's model of its fleet, fixed before the day starts, so nothing a
policy does in the episode moves it; its error is the VPP's risk, as a forecast's is in a real market).

Each committed step settles its delivery d = forecast - metered (fleet kW) against the commitment R:
``price x min(d, R) x dt`` is paid (negative when the fleet drew more than its forecast: it bought back energy it
sold) and ``shortfall_multiplier x price x max(R - d, 0) x dt`` is charged. That reward is ``price x R -
(1 + shortfall_multiplier) x price x max(R - d, 0)`` (per step and dt): concave and piecewise linear in the load,
so the LP oracle plans it exactly (``commit_terms``). The price is the data's import price x ``price_scale``: the
bundled data has no wholesale price, so its time-of-use shape stands in for the day-ahead price (documented, not
a market's LMP). The payment is split across homes by their own delivery, the shortfall charge by import.
"""

from __future__ import annotations

import numpy as np

from ...data.profiles import G
from ..fleet import Fleet, StepOutcome
from .base import Task, check_ranges, split_by_weight


class MarketBid(Task):
    """Commit ``offer_kw_per_home`` of reduction in each day's ``bid_hours`` dearest hours, day ahead."""

    name = "market_bid"
    obs_names = ("bid_committed_per_home_kw", "bid_hours_to_commitment", "bid_forecast_per_home_kw",
                 "bid_last_delivered_per_home_kw")

    def __init__(self, offer_kw_per_home: float = 0.5, bid_hours: int = 4, price_scale: float = 1.0,
                 shortfall_multiplier: float = 1.5) -> None:
        check_ranges("MarketBid", offer_kw_per_home=(offer_kw_per_home, 0.0, 100.0), bid_hours=(bid_hours, 0, 24),
                     price_scale=(price_scale, 0.0, 100.0), shortfall_multiplier=(shortfall_multiplier, 0.0, 100.0))
        if int(bid_hours) != bid_hours:
            raise ValueError(f"MarketBid.bid_hours must be a whole number of hours in [0, 24], got {bid_hours!r}")
        self.offer_kw_per_home = offer_kw_per_home
        self.bid_hours = int(bid_hours)
        self.price_scale = price_scale
        self.shortfall_multiplier = shortfall_multiplier
        self.history_days = 1  # the persistence forecast reads the day before the episode

    def reset(self, fleet: Fleet, episode_steps: int, rng: np.random.Generator) -> None:
        super().reset(fleet, episode_steps, rng)
        if 3600 % fleet.dt_s:
            raise ValueError(f"MarketBid commits whole hours: dt_s must divide 3600, got {fleet.dt_s}")
        per_day = fleet.steps_per_day
        self.price = fleet.grid_at_steps(np.arange(episode_steps))[:, G["price_import"]] * self.price_scale
        own = fleet.simulate_own_control(fleet.start_s - per_day * fleet.dt_s, episode_steps, rng)  # a day earlier
        self.forecast_home = own  # (steps, N): each home's own-control load a day before each step
        self.forecast_kw = own.sum(axis=1, dtype=np.float64)
        self.commit_kw = np.zeros(episode_steps)
        per_hour = 3600 // fleet.dt_s
        t_s = fleet.start_s + np.arange(episode_steps) * fleet.dt_s
        hour_index = (t_s - t_s[0] + fleet.start_s % 3600) // 3600  # hours since the episode's first hour began
        day = t_s // 86400
        for d in np.unique(day):
            steps = np.flatnonzero(day == d)
            hours = hour_index[steps]
            full = [h for h in np.unique(hours) if np.count_nonzero(hours == h) == per_hour]  # hours wholly inside
            if not full:
                continue
            mean_price = np.array([self.price[steps[hours == h]].mean() for h in full])
            chosen = np.array(full)[np.argsort(-mean_price, kind="stable")[:self.bid_hours]]
            self.commit_kw[steps[np.isin(hours, chosen)]] = self.offer_kw_per_home * fleet.n
        committed = np.flatnonzero(self.commit_kw > 0)
        nxt = np.full(episode_steps + 1, np.inf)
        if len(committed):
            pos = np.searchsorted(committed, np.arange(episode_steps + 1))
            ok = pos < len(committed)
            nxt[ok] = (committed[pos[ok]] - np.arange(episode_steps + 1)[ok]) * fleet.dt_h
        self.hours_to_commitment = np.minimum(nxt, 24.0)
        self.delivered_kw = 0.0
        self.paid = self.charged = 0.0
        self.committed_kwh = self.delivered_kwh = self.shortfall_kwh = 0.0

    def observation(self, fleet: Fleet) -> np.ndarray:
        t = min(self.t, self.episode_steps - 1)
        return np.array([self.commit_kw[t] / self.n, self.hours_to_commitment[min(self.t, self.episode_steps)] / 24.0,
                         self.forecast_kw[t] / self.n, self.delivered_kw / self.n])

    def reward(self, fleet: Fleet, outcome: StepOutcome) -> np.ndarray:
        t = min(self.t, self.episode_steps - 1)
        self.t += 1
        commit = self.commit_kw[t]
        self.delivered_kw = 0.0
        if commit <= 0.0:
            return np.zeros(self.n)
        net = outcome.net_kw.astype(np.float64)
        delivered = self.forecast_kw[t] - float(net.sum())
        self.delivered_kw = delivered
        shortfall = max(commit - delivered, 0.0)
        price = float(self.price[t])
        pay = price * min(delivered, commit) * self.dt_h
        charge = self.shortfall_multiplier * price * shortfall * self.dt_h
        self.paid += pay
        self.charged += charge
        self.committed_kwh += commit * self.dt_h
        self.delivered_kwh += min(max(delivered, 0.0), commit) * self.dt_h
        self.shortfall_kwh += shortfall * self.dt_h
        own = self.forecast_home[t] - net  # each home's delivery against its own forecast
        r = split_by_weight(pay, np.maximum(own if pay >= 0 else -own, 0.0))
        if charge:
            r = r - split_by_weight(charge, np.maximum(net, 0.0))
        return r

    def commit_terms(self, start: int, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(plan steps with a commitment, their forecast kW, commitment kW, price $/kWh) over [start, start +
        steps): the LP's reward there is price x R x dt - (1 + multiplier) x price x s x dt with
        s >= R - forecast + planned fleet load, s >= 0."""
        idx = np.arange(start, min(start + steps, self.episode_steps))
        idx = idx[self.commit_kw[idx] > 0]
        return idx - start, self.forecast_kw[idx], self.commit_kw[idx], self.price[idx]

    def kpis(self) -> dict[str, float]:
        perf = self.delivered_kwh / self.committed_kwh if self.committed_kwh > 0 else float("nan")
        return {"bid_committed_kwh": self.committed_kwh, "bid_delivered_kwh": self.delivered_kwh,
                "bid_shortfall_kwh": self.shortfall_kwh, "bid_performance": perf, "bid_paid": self.paid,
                "bid_shortfall_charge": self.charged}

    def step_info(self) -> dict[str, float]:
        t = min(max(self.t - 1, 0), self.episode_steps - 1)  # the step just settled
        return {"bid_commit_kw": float(self.commit_kw[t]), "bid_delivered_kw": self.delivered_kw}
