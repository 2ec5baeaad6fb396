"""Frequency regulation: track a seconds-resolution regulation signal with committed capacity.

Target aggregate = baseline + signal * capacity (consumption convention: a positive signal asks
the fleet to consume more, i.e. regulation down). The baseline is the fleet's own-control load
this step. Scored at episode end like a grid operator's regulation performance score
(PJM Manual 12 style): accuracy (best correlation over delays 0..5 min), delay and precision
on 10-second samples, each in [0, 1], averaged.
"""

from __future__ import annotations

import numpy as np

from ...data.synthetic import regulation_signal
from ..fleet import Fleet, StepOutcome
from .base import Task, check_ranges, split_by_weight


def performance_score(signal: np.ndarray, response: np.ndarray, dt_s: float,
                      sample_s: float = 10.0, max_delay_s: float = 300.0) -> dict[str, float]:
    """Accuracy, delay, precision and their mean for a normalised response to a signal."""
    k = max(1, int(round(sample_s / dt_s)))
    n = (len(signal) // k) * k
    if n < 2 * k:
        return {"reg_accuracy": float("nan"), "reg_delay": float("nan"), "reg_precision": float("nan"),
                "reg_score": float("nan")}
    s = signal[:n].reshape(-1, k).mean(axis=1)
    r = response[:n].reshape(-1, k).mean(axis=1)
    max_lag = min(int(max_delay_s // (k * dt_s)), len(s) - 2)
    best_corr, best_lag = -1.0, 0
    for lag in range(max_lag + 1):  # at most 31 lags on 10 s samples
        a, b = s[: len(s) - lag], r[lag:]
        if a.std() < 1e-12 or b.std() < 1e-12:
            continue
        c = float(np.corrcoef(a, b)[0, 1])
        if c > best_corr:
            best_corr, best_lag = c, lag
    accuracy = max(best_corr, 0.0)
    delay = abs((best_lag * k * dt_s - max_delay_s) / max_delay_s)
    mean_abs = np.abs(s).mean()
    precision = max(0.0, 1.0 - np.abs(r - s).mean() / mean_abs) if mean_abs > 0 else float("nan")
    return {"reg_accuracy": accuracy, "reg_delay": delay, "reg_precision": float(precision),
            "reg_score": float((accuracy + delay + precision) / 3.0)}


class FrequencyRegulation(Task):
    """Penalty ``penalty_per_kwh`` $ per kWh of tracking error, split across the homes whose
    deviation from their own-control load points the wrong way; capacity credit
    ``capacity_price_per_kwh`` $ per kW-h committed."""

    name = "frequency_regulation"
    obs_names = ("reg_signal", "reg_capacity_per_home_kw", "reg_last_error_per_home_kw")

    def __init__(self, capacity_kw_per_home: float = 1.0, penalty_per_kwh: float = 0.5,
                 capacity_price_per_kwh: float = 0.03, signal_tau_s: float = 60.0) -> None:
        check_ranges("FrequencyRegulation", capacity_kw_per_home=(capacity_kw_per_home, 0.0, 100.0),
                     penalty_per_kwh=(penalty_per_kwh, 0.0, 1000.0),
                     capacity_price_per_kwh=(capacity_price_per_kwh, 0.0, 1000.0),
                     signal_tau_s=(signal_tau_s, 1.0, 3600.0))
        self.capacity_kw_per_home = capacity_kw_per_home
        self.penalty_per_kwh = penalty_per_kwh
        self.capacity_price_per_kwh = capacity_price_per_kwh
        self.signal_tau_s = signal_tau_s

    def reset(self, fleet: Fleet, episode_steps: int, rng: np.random.Generator) -> None:
        super().reset(fleet, episode_steps, rng)
        self.dt_s = fleet.dt_s
        self.capacity_kw = self.capacity_kw_per_home * fleet.n
        self.signal = np.append(regulation_signal(rng, episode_steps, fleet.dt_s, self.signal_tau_s), 0.0)
        self.response = np.zeros(episode_steps)
        self.error_kw = 0.0
        self.error_kwh = 0.0

    def observation(self, fleet: Fleet) -> np.ndarray:
        return np.array([self.signal[min(self.t, self.episode_steps)], self.capacity_kw_per_home,
                         self.error_kw / self.n])

    def reward(self, fleet: Fleet, outcome: StepOutcome) -> np.ndarray:
        t = min(self.t, self.episode_steps - 1)
        self.t += 1
        deviation = outcome.net_kw - outcome.default_net_kw
        total_dev = float(deviation.sum(dtype=np.float64))
        self.response[t] = total_dev / self.capacity_kw if self.capacity_kw > 0 else 0.0
        self.error_kw = float(total_dev - self.signal[t] * self.capacity_kw)
        self.error_kwh += abs(self.error_kw) * self.dt_h
        credit = self.capacity_price_per_kwh * self.capacity_kw_per_home * self.dt_h
        if abs(self.error_kw) < 1e-9:
            return np.full(self.n, credit)
        wrong_way = np.maximum(np.sign(self.error_kw) * deviation, 0.0)
        return credit - split_by_weight(self.penalty_per_kwh * abs(self.error_kw) * self.dt_h, wrong_way)

    def kpis(self) -> dict[str, float]:
        n = min(self.t, self.episode_steps)
        out = performance_score(self.signal[:n], self.response[:n], self.dt_s)
        out["reg_error_kwh"] = self.error_kwh
        out["reg_capacity_kw"] = self.capacity_kw
        return out

    def step_info(self) -> dict[str, float]:
        return {"reg_signal": float(self.signal[max(self.t - 1, 0)]), "reg_error_kw": self.error_kw}
