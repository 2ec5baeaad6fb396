"""What a dispatch loop can know about the step it is deciding: the observation contract.

At decision time a VPP has telemetry up to the last completed step, device-reported limits, published
tariffs and forecasts; never the realised load, PV, hot-water draw or weather of the step being decided.
The fleet therefore runs every step in two passes: it first *believes* this step's exogenous inputs
(``Forecaster.believe``), and everything a policy, rule or MPC reads before acting (device limits and
own-control power, free-running temperatures, the observation) comes from that belief; ``Fleet.reveal`` then
puts in the true inputs, on which the action is executed (relative to each device's own control), the shield
projects (a known limit: in the dispatch loop it will work on telemetry) and the physics runs. Only the oracle, by construction, sees the
future (``ForecastConfig.perfect()``).

Methods per input: ``persistence`` (the last completed step's value), ``seasonal_naive`` (the same time
one day earlier), ``perfect`` (the truth: for the oracle, or where the input is published ahead). Past
values are the data's true past (a metered quantity once its step has completed). EV sessions are known
at the step start (the charger reports the plug-in), as is a C&I site's scheduled flexible load.
Prices are ``published`` by default (a TOU tariff or a day-ahead price is known ahead); set
``prices="persistence"`` for a real-time price.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.profiles import G, H

METHODS = ("persistence", "seasonal_naive", "perfect")


@dataclass(frozen=True)
class ForecastConfig:
    """How each exogenous input of the step being decided is forecast (see the module docstring)."""

    base_load: str = "persistence"
    pv: str = "seasonal_naive"
    hot_water: str = "seasonal_naive"
    weather: str = "persistence"
    carbon: str = "persistence"
    prices: str = "published"

    def __post_init__(self) -> None:
        for name in ("base_load", "pv", "hot_water", "weather", "carbon"):
            value = getattr(self, name)
            if value not in METHODS:
                raise ValueError(f"ForecastConfig.{name} must be one of {list(METHODS)}, got {value!r}")
        if self.prices not in ("published", "persistence", "seasonal_naive"):
            raise ValueError(f"ForecastConfig.prices must be one of ['published', 'persistence', "
                             f"'seasonal_naive'], got {self.prices!r}")

    @classmethod
    def perfect(cls) -> ForecastConfig:
        """Perfect foresight: the oracle's view (and the old, leaking behaviour)."""
        return cls("perfect", "perfect", "perfect", "perfect", "perfect", "published")

    @property
    def is_perfect(self) -> bool:
        return all(getattr(self, k) == "perfect" for k in ("base_load", "pv", "hot_water", "weather", "carbon")) \
            and self.prices == "published"


_HOME = (("base_load", H["base_load_kw"]), ("pv", H["pv_kw_per_kwp"]), ("hot_water", H["dhw_draw_l"]))
_GRID = (("weather", (G["outdoor_temp_c"], G["ghi_w_m2"])), ("carbon", (G["carbon_kg_per_kwh"],)),
         ("prices", (G["price_import"], G["price_export"])))


class Forecaster:
    """Replaces the inputs of the step being decided by their forecasts from the past only."""

    def __init__(self, config: ForecastConfig | None = None) -> None:
        self.config = config or ForecastConfig()

    def believe(self, past, step: int, steps_per_day: int, truth: tuple[np.ndarray, np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray]:
        """(channels (C, N), grid (G,)) believed for episode step ``step``; ``past(k, channels)`` gives the true
        inputs of step k (only k < ``step`` is read; those channels, and the grid), ``truth`` those of ``step``
        itself (kept where an input is perfect or published)."""
        c = self.config
        if c.is_perfect:
            return truth
        ch, grid = truth[0].copy(), truth[1].copy()
        lag_of = {"persistence": 1, "seasonal_naive": steps_per_day}
        rows_at: dict[int, list[int]] = {}  # the channels to read at each lag
        for name, row in _HOME:
            if getattr(c, name) in lag_of:
                rows_at.setdefault(lag_of[getattr(c, name)], []).append(row)
        for name, _ in _GRID:
            if getattr(c, name) in lag_of:
                rows_at.setdefault(lag_of[getattr(c, name)], [])
        for lag, rows in rows_at.items():
            home, source = past(step - lag, tuple(rows))
            ch[rows] = home
            for name, cols in _GRID:
                if lag_of.get(getattr(c, name)) == lag:
                    grid[..., list(cols)] = source[..., list(cols)]  # (G,), or (K, G) with K clocks
        return ch, grid
