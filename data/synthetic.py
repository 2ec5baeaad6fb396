"""Seeded generators for what no installable dataset ships at fleet scale.

Every constant here is listed, with where it comes from, in data/PROVENANCE.md. Generators are
vectorized over profiles and days and return arrays at ``steps_per_day`` resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EvSessionStats:
    """Residential level-2 charging behaviour (hours are local clock time)."""

    arrival_mean_h: float = 18.0
    arrival_std_h: float = 1.5
    departure_mean_h: float = 7.5
    departure_std_h: float = 1.0
    plug_in_probability: float = 0.8  # share of days the EV is plugged in at home
    daily_km_median: float = 45.0
    daily_km_sigma: float = 0.5  # lognormal shape of daily distance
    kwh_per_km: float = 0.18
    capacities_kwh: tuple[float, ...] = (60.0, 75.0, 82.0)
    target_soc: float = 0.9


def ev_sessions(rng: np.random.Generator, n_profiles: int, n_days: int, steps_per_day: int,
                stats: EvSessionStats = EvSessionStats()) -> np.ndarray:
    """EV channels (connected, hours_to_departure, capacity, arrival_soc, target_soc).

    One overnight session per plugged-in day: arrival in the evening, departure next morning.
    Energy needed grows with the days since the last plug-in, so skipped days are caught up.
    The year is cyclic (homes read profiles with wrap-around): the last evening's session continues
    into the first morning. Returns (n_profiles, n_days * steps_per_day, 5) float32.
    """
    dt_h = 24.0 / steps_per_day
    t = n_days * steps_per_day
    out = np.zeros((n_profiles, t, 5), dtype=np.float32)
    cap = rng.choice(np.asarray(stats.capacities_kwh), size=n_profiles)
    arrive = np.clip(rng.normal(stats.arrival_mean_h, stats.arrival_std_h, (n_profiles, n_days)), 14.0, 23.5)
    depart = np.clip(rng.normal(stats.departure_mean_h, stats.departure_std_h, (n_profiles, n_days)), 5.0, 10.0)
    plugged = rng.random((n_profiles, n_days)) < stats.plug_in_probability
    km = rng.lognormal(np.log(stats.daily_km_median), stats.daily_km_sigma, (n_profiles, n_days))
    # energy used since the last session: cumulative driving reset at each plug-in
    used = km * stats.kwh_per_km
    backlog = np.zeros(n_profiles)
    need = np.zeros((n_profiles, n_days))
    for d in range(n_days):  # loop over days, vectorized over profiles
        backlog += used[:, d]
        need[:, d] = np.where(plugged[:, d], backlog, 0.0)
        backlog = np.where(plugged[:, d], 0.0, backlog)
    need = np.minimum(need, 0.8 * cap[:, None] * stats.target_soc)
    arrival_soc = stats.target_soc - need / cap[:, None]

    for p in range(n_profiles):  # one-time build (not the hot path): sessions of one profile
        a_step = np.ceil(arrive[p] / dt_h).astype(int) + np.arange(n_days) * steps_per_day
        d_step = np.floor(depart[p] / dt_h).astype(int) + (np.arange(n_days) + 1) * steps_per_day
        for d in np.flatnonzero(plugged[p]):
            if d_step[d] <= a_step[d]:
                continue
            rows = np.arange(a_step[d], d_step[d])
            out[p, rows % t, 0] = 1.0
            out[p, rows % t, 1] = (d_step[d] - rows) * dt_h
            out[p, rows % t, 2] = cap[p]
            out[p, rows % t, 3] = arrival_soc[p, d]
            out[p, rows % t, 4] = stats.target_soc
    return out


def hot_water_draws(rng: np.random.Generator, n_profiles: int, n_days: int, steps_per_day: int,
                    litres_per_day: float = 190.0) -> np.ndarray:
    """Hot-water draws in litres per step, (n_profiles, n_days * steps_per_day) float32.

    Draw events arrive as a Poisson process whose hourly rate follows a morning and an
    evening peak; event sizes are exponential; the daily mean is ``litres_per_day``.
    """
    hour_weight = np.array([1, 0.5, 0.5, 0.5, 1, 3, 8, 10, 8, 5, 4, 3, 3, 3, 2.5, 2.5, 3, 5, 7, 8, 7, 5, 3, 2],
                           dtype=float)
    hour_weight /= hour_weight.sum()
    events_per_day = 12.0
    step_hours = (np.arange(steps_per_day) * 24 // steps_per_day).astype(int)
    rate = events_per_day * hour_weight[step_hours] * (24.0 / steps_per_day)
    counts = rng.poisson(np.broadcast_to(rate, (n_profiles, n_days, steps_per_day)))
    size = litres_per_day / events_per_day
    # sum of `counts` exponential draws = gamma(counts, size)
    litres = np.where(counts > 0, rng.gamma(np.maximum(counts, 1), size), 0.0)
    return litres.reshape(n_profiles, n_days * steps_per_day).astype(np.float32)


def load_diversity(rng: np.random.Generator, n_profiles: int, n_steps: int, sigma: float = 0.35,
                   rho: float = 0.9) -> np.ndarray:
    """Multiplicative AR(1) log-normal noise with mean 1 that turns a smooth standard load profile
    (an average over many homes) into individual, spiky homes. (n_profiles, n_steps) float32."""
    eps = rng.normal(0.0, sigma * np.sqrt(1 - rho**2), (n_profiles, n_steps))
    from scipy.signal import lfilter

    x = lfilter([1.0], [1.0, -rho], eps, axis=1)
    x[:, 0] = rng.normal(0.0, sigma, n_profiles)
    return np.exp(x - sigma**2 / 2).astype(np.float32)


def regulation_signal(rng: np.random.Generator, n_steps: int, dt_s: float, tau_s: float = 60.0,
                      neutral_window_s: float = 900.0) -> np.ndarray:
    """A RegD-like regulation signal in [-1, 1] at ``dt_s`` resolution.

    Band-limited noise (first-order low-pass, time constant ``tau_s``), scaled so it spans
    the band, made energy-neutral by removing its mean over each ``neutral_window_s`` window
    (the property a dynamic regulation signal is designed to have over ~15 minutes).
    """
    from scipy.signal import lfilter

    a = float(np.exp(-dt_s / tau_s))
    x = lfilter([1 - a], [1, -a], rng.normal(0.0, 1.0, n_steps))
    w = max(1, int(round(neutral_window_s / dt_s)))
    n_full = (n_steps // w) * w
    blocks = x[:n_full].reshape(-1, w)
    x[:n_full] = (blocks - blocks.mean(axis=1, keepdims=True)).ravel()
    if n_steps > n_full:
        x[n_full:] -= x[n_full:].mean()
    scale = np.percentile(np.abs(x), 99) or 1.0
    return np.clip(x / scale, -1.0, 1.0)
