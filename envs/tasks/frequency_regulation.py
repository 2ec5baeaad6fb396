"""Frequency regulation: track a seconds-resolution regulation signal with committed capacity, scored as PJM
scores it.

The fleet declares an operating point for every hour of the episode (per home; PJM measures a regulating
resource's response as its deviation from the point declared for the hour): its mean metered load over the hour
before (for the first hour, the homes' own-control load then, simulated at reset).
Target = declared point + signal x capacity (consumption convention: a positive signal asks the fleet to consume
more). Each step pays the capacity credit and charges ``penalty_per_kwh`` per kWh of tracking error, split
across the homes whose deviation points the wrong way. The KPIs are PJM's performance score
(``envs.regulation_score``: accuracy, delay, precision on 10-second samples, per hour, averaged).
"""

from __future__ import annotations

import math

import numpy as np

from ...data.synthetic import regulation_signal
from .. import regulation_score
from ..fleet import Fleet, StepOutcome
from .base import Task, check_ranges, split_by_weight


def score_series(signal: np.ndarray, response: np.ndarray, dt_s: float) -> dict[str, float]:
    """PJM's hourly performance score of a response to a signal sampled every ``dt_s``, averaged over the
    complete hours (a shorter run is scored as one window); NaN where the resolution cannot show a delay."""
    nan = {"reg_accuracy": float("nan"), "reg_delay": float("nan"), "reg_precision": float("nan"),
           "reg_score": float("nan")}
    if dt_s < 10.0 and float(dt_s).is_integer():  # average onto PJM's 10-second samples (via a common grid)
        fine = math.gcd(int(dt_s), 10)
        rep, k = int(dt_s) // fine, 10 // fine
        signal, response = np.repeat(signal, rep), np.repeat(response, rep)
        n = (len(signal) // k) * k
        signal, response = signal[:n].reshape(-1, k).mean(axis=1), response[:n].reshape(-1, k).mean(axis=1)
        sample_s = 10.0
    elif 300.0 % dt_s == 0:
        sample_s = float(dt_s)
    else:
        return nan
    per_hour = int(round(3600.0 / sample_s))
    if len(signal) >= per_hour:
        score = regulation_score.hourly_scores(signal, response, sample_s, drop_incomplete=True)
        parts = [float(np.nanmean(getattr(score, name))) for name in ("accuracy", "delay", "precision", "composite")]
    elif len(signal) >= int(300.0 / sample_s) + 2:
        score = regulation_score.performance_score(signal, response, sample_s)
        parts = [float(getattr(score, name)) for name in ("accuracy", "delay", "precision", "composite")]
    else:
        return nan
    return dict(zip(("reg_accuracy", "reg_delay", "reg_precision", "reg_score"), parts))


class FrequencyRegulation(Task):
    """Penalty ``penalty_per_kwh`` $ per kWh of tracking error, split across the homes whose deviation from
    their declared point points the wrong way; capacity credit ``capacity_price_per_kwh`` $ per kW-h committed.

    :param capacity_paid_by_score: pay the capacity credit as PJM does, scaled by the hour's performance score
        (accuracy, delay, precision on 10-second samples), at each hour's end, instead of flat every step. It
        needs a resolution the score can read (``dt_s`` <= 10 s, or a divisor of 300 s)."""

    name = "frequency_regulation"
    obs_names = ("reg_signal", "reg_capacity_per_home_kw", "reg_last_error_per_home_kw")

    def __init__(self, capacity_kw_per_home: float = 1.0, penalty_per_kwh: float = 0.5,
                 capacity_price_per_kwh: float = 0.03, signal_tau_s: float = 60.0,
                 capacity_paid_by_score: bool = False) -> None:
        check_ranges("FrequencyRegulation", capacity_kw_per_home=(capacity_kw_per_home, 0.0, 100.0),
                     penalty_per_kwh=(penalty_per_kwh, 0.0, 1000.0),
                     capacity_price_per_kwh=(capacity_price_per_kwh, 0.0, 1000.0),
                     signal_tau_s=(signal_tau_s, 1.0, 3600.0))
        self.capacity_kw_per_home = capacity_kw_per_home
        self.penalty_per_kwh = penalty_per_kwh
        self.capacity_price_per_kwh = capacity_price_per_kwh
        self.signal_tau_s = signal_tau_s
        self.capacity_paid_by_score = bool(capacity_paid_by_score)
        self.history_days = 1  # the hour before the episode sets its first operating point

    def reset(self, fleet: Fleet, episode_steps: int, rng: np.random.Generator) -> None:
        super().reset(fleet, episode_steps, rng)
        self.dt_s = fleet.dt_s
        self.capacity_kw = self.capacity_kw_per_home * fleet.n
        self.signal = np.append(regulation_signal(rng, episode_steps, fleet.dt_s, self.signal_tau_s), 0.0)
        self.response = np.zeros(episode_steps)
        self.error_kw = 0.0
        self.error_kwh = 0.0
        self.hour_steps = max(1, round(3600 / fleet.dt_s))
        # the first hour's point: the homes' mean own-control load over the hour before the episode (metered)
        self.first_declared_kw = fleet.simulate_own_control(fleet.start_s - self.hour_steps * fleet.dt_s,
                                                            self.hour_steps, rng).mean(axis=0)
        self.declared_kw = self.first_declared_kw.copy()
        self._hour_sum = np.zeros(fleet.n)
        self._metered_fleet = np.zeros(episode_steps)
        self.scored_credit = 0.0
        if self.capacity_paid_by_score and not (fleet.dt_s <= 10 or 300 % fleet.dt_s == 0):
            raise ValueError(f"FrequencyRegulation.capacity_paid_by_score needs dt_s <= 10 or a divisor of 300 "
                             f"(PJM's score reads 10-second samples), got dt_s={fleet.dt_s}")

    def observation(self, fleet: Fleet) -> np.ndarray:
        return np.array([self.signal[min(self.t, self.episode_steps)], self.capacity_kw_per_home,
                         self.error_kw / self.n])

    def reward(self, fleet: Fleet, outcome: StepOutcome) -> np.ndarray:
        t = min(self.t, self.episode_steps - 1)
        self.t += 1
        deviation = outcome.net_kw - self.declared_kw
        self._hour_sum += outcome.net_kw
        self._metered_fleet[t] = float(outcome.net_kw.sum(dtype=np.float64))
        if self.t % self.hour_steps == 0:  # the next hour's point: this hour's mean metered load
            self.declared_kw = self._hour_sum / self.hour_steps
            self._hour_sum = np.zeros(self.n)
        total_dev = float(deviation.sum(dtype=np.float64))
        self.response[t] = total_dev / self.capacity_kw if self.capacity_kw > 0 else 0.0
        self.error_kw = float(total_dev - self.signal[t] * self.capacity_kw)
        self.error_kwh += abs(self.error_kw) * self.dt_h
        credit = self.capacity_price_per_kwh * self.capacity_kw_per_home * self.dt_h
        if self.capacity_paid_by_score:  # the hour's credit x its PJM score, paid when the hour ends
            credit = 0.0
            if self.t % self.hour_steps == 0:
                hour = slice(self.t - self.hour_steps, self.t)
                score = score_series(self.signal[hour], self.response[hour], self.dt_s)["reg_score"]
                credit = self.capacity_price_per_kwh * self.capacity_kw_per_home * self.hour_steps * self.dt_h * \
                    (0.0 if score != score else float(score))
                self.scored_credit += credit * self.n
        if abs(self.error_kw) < 1e-9:
            return np.full(self.n, credit)
        wrong_way = np.maximum(np.sign(self.error_kw) * deviation, 0.0)
        return credit - split_by_weight(self.penalty_per_kwh * abs(self.error_kw) * self.dt_h, wrong_way)

    def declared_terms(self, start: int, steps: int) -> tuple[np.ndarray, list[np.ndarray], float]:
        """The fleet's declared point over plan steps [start, start + steps) as an affine function of the
        planned fleet load: (const (steps,), per step the plan-relative steps whose mean it is (empty: const
        alone), weight). Hours whose previous hour is already metered are constants."""
        h = self.hour_steps
        const = np.zeros(steps)
        windows: list[np.ndarray] = []
        for k in range(steps):
            t = start + k
            hour = t // h
            if hour == 0:
                const[k] = float(self.first_declared_kw.sum())
                windows.append(np.zeros(0, int))
                continue
            prev = np.arange((hour - 1) * h, hour * h)
            known = prev < start
            const[k] = float(self._metered_fleet[prev[known]].sum()) / h if known.any() else 0.0
            windows.append(prev[~known] - start)
        return const, windows, 1.0 / h

    def kpis(self) -> dict[str, float]:
        n = min(self.t, self.episode_steps)
        out = score_series(self.signal[:n], self.response[:n], self.dt_s)
        out["reg_error_kwh"] = self.error_kwh
        if self.capacity_paid_by_score:
            out["reg_capacity_credit"] = self.scored_credit
        out["reg_capacity_kw"] = self.capacity_kw
        return out

    def step_info(self) -> dict[str, float]:
        return {"reg_signal": float(self.signal[max(self.t - 1, 0)]), "reg_error_kw": self.error_kw}
