"""Price arbitrage: minimise the energy bill under TOU / real-time import prices and an export rate."""

from __future__ import annotations

import numpy as np

from ...data.profiles import G
from ..fleet import Fleet, StepOutcome
from .base import Task, check_ranges


class PriceArbitrage(Task):
    """Reward = -(import price * import - export price * export) * dt, per home.

    :param price_scale: multiplies the profile prices (e.g. to test sensitivity).
    """

    name = "price_arbitrage"
    supports_clocks = True
    obs_names = ("price_next_import", "price_mean_day", "price_max_next_12h", "price_min_next_12h",
                 "hours_to_max_price_next_12h/12", "price_cheaper_h_next_24h/24", "price_dearer_h_next_24h/24")

    def __init__(self, price_scale: float = 1.0) -> None:
        check_ranges("PriceArbitrage", price_scale=(price_scale, 0.0, 100.0))
        self.price_scale = price_scale

    def reset(self, fleet: Fleet, episode_steps: int, rng: np.random.Generator) -> None:
        super().reset(fleet, episode_steps, rng)
        self._mean_price = fleet.mean_price() * self.price_scale

    def observation(self, fleet: Fleet) -> np.ndarray:
        # the price outlook a dispatcher has: the tariff when it is published ahead (TOU, day-ahead), else a
        # forecast from past prices (Fleet.price_outlook)
        hour = max(1, round(3600 / fleet.dt_s))
        window = max(1, round(12 * 3600 / fleet.dt_s))
        day = max(window, hour + 1, fleet.steps_per_day)
        outlook = fleet.price_outlook(np.arange(day)) * self.price_scale  # (steps,) or (steps, K)
        ahead = outlook[:window]
        to_max_h = np.argmax(ahead, axis=0) * fleet.dt_h
        # where now ranks in the next day: hours priced below and above it (ties with now count as neither)
        now, next_day = outlook[0], outlook[:fleet.steps_per_day]
        cheaper_h = (next_day < now - 1e-9).sum(axis=0) * fleet.dt_h
        dearer_h = (next_day > now + 1e-9).sum(axis=0) * fleet.dt_h
        return np.stack(np.broadcast_arrays(outlook[hour], self._mean_price, ahead.max(axis=0), ahead.min(axis=0),
                                            to_max_h / 12.0, cheaper_h / 24.0, dearer_h / 24.0),
                        axis=-1).astype(np.float64)

    def reward(self, fleet: Fleet, outcome: StepOutcome) -> np.ndarray:
        self.t += 1
        g = outcome.grid
        net = outcome.net_kw
        if fleet.clocks == 1:
            buy = float(g[G["price_import"]]) * self.price_scale * fleet.dt_h
            sell = float(g[G["price_export"]]) * self.price_scale * fleet.dt_h
        else:  # per home, from its clock's prices (in the homes' dtype, as a Python scalar is taken above)
            buy = fleet.per_home((g[:, G["price_import"]] * self.price_scale * fleet.dt_h).astype(net.dtype))
            sell = fleet.per_home((g[:, G["price_export"]] * self.price_scale * fleet.dt_h).astype(net.dtype))
        return np.minimum(net, 0.0) * -sell - np.maximum(net, 0.0) * buy
