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
    obs_names = ("price_next_import", "price_mean_day", "price_max_next_12h", "price_min_next_12h",
                 "hours_to_max_price_next_12h/12")

    def __init__(self, price_scale: float = 1.0) -> None:
        check_ranges("PriceArbitrage", price_scale=(price_scale, 0.0, 100.0))
        self.price_scale = price_scale

    def reset(self, fleet: Fleet, episode_steps: int, rng: np.random.Generator) -> None:
        super().reset(fleet, episode_steps, rng)
        self._mean_price = float(fleet.profiles.grid_channel("price_import").mean()) * self.price_scale

    def observation(self, fleet: Fleet) -> np.ndarray:
        # price one hour ahead: TOU schedules are public, so this is not a leak of the future
        p = fleet.profiles
        ahead = (fleet.row + max(1, 3600 // p.dt_s)) % p.num_rows
        window = max(1, 12 * 3600 // p.dt_s)
        rows = (fleet.row + np.arange(window)) % p.num_rows
        outlook = p.grid[rows, G["price_import"]] * self.price_scale
        to_max_h = float(np.argmax(outlook)) * p.dt_s / 3600.0
        return np.array([p.grid[ahead, G["price_import"]] * self.price_scale, self._mean_price, outlook.max(),
                         outlook.min(), to_max_h / 12.0])

    def reward(self, fleet: Fleet, outcome: StepOutcome) -> np.ndarray:
        self.t += 1
        g = outcome.grid
        net = outcome.net_kw
        buy = float(g[G["price_import"]]) * self.price_scale * fleet.dt_h
        sell = float(g[G["price_export"]]) * self.price_scale * fleet.dt_h
        return np.minimum(net, 0.0) * -sell - np.maximum(net, 0.0) * buy
