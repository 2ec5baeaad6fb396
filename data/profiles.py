"""Shared time series that drive a fleet: per-profile channels and grid-wide signals.

A fleet of N homes references K << N profiles. Each home reads its profile's row at
``(step_row + shift) % T``, so memory is T x K x C and never grows with N x T. The table is
time-major (T, K, C): homes read neighbouring rows at neighbouring steps, which keeps the
per-step gather in cache.
EV sessions are profile channels too (connected / hours to departure / capacity / SoC),
so real charger logs and synthetic sessions go through the same code path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Per-profile channels, one float32 column each (units in the name).
HOME_CHANNELS: tuple[str, ...] = (
    "base_load_kw",  # uncontrollable household load, kW (mean over the row)
    "pv_kw_per_kwp",  # PV AC output per kW of installed PV, kW/kWp
    "dhw_draw_l",  # hot-water draw during the row, litres
    "flex_load_kw",  # C&I flexible-load baseline, kW
    "ev_connected",  # share of the row an EV is plugged in (1.0: the whole row; a fraction after coarsening)
    "ev_hours_to_departure",  # hours from the row's start to departure (0 when not connected)
    "ev_capacity_kwh",  # battery capacity of the plugged EV, kWh
    "ev_arrival_soc",  # EV state of charge at plug-in, fraction 0..1
    "ev_target_soc",  # state of charge the driver wants at departure, fraction 0..1
)
#: Grid-wide channels, float64, one column each.
GRID_CHANNELS: tuple[str, ...] = (
    "outdoor_temp_c",  # outdoor dry-bulb temperature, degC
    "ghi_w_m2",  # global horizontal irradiance, W/m2 (drives solar gains of homes)
    "price_import",  # retail import price, $/kWh
    "price_export",  # export (feed-in) compensation, $/kWh
    "carbon_kg_per_kwh",  # grid carbon intensity, kg CO2 / kWh
)
H = {name: i for i, name in enumerate(HOME_CHANNELS)}
G = {name: i for i, name in enumerate(GRID_CHANNELS)}

# How each channel aggregates when rows are merged into a coarser resolution.
_SUM_CHANNELS = {"dhw_draw_l"}
_SESSION_CHANNELS = ("ev_capacity_kwh", "ev_arrival_soc", "ev_target_soc")  # from the session's first row


@dataclass(frozen=True)
class Profiles:
    """Time series at a fixed resolution ``dt_s``; row 0 starts at ``start`` (ISO date).

    :param home: (T, K, len(HOME_CHANNELS)) float32, time-major.
    :param grid: (T, len(GRID_CHANNELS)) float64, shared by every home.
    :param names: K profile names (e.g. the CityLearn building each came from).
    """

    dt_s: int
    home: np.ndarray
    grid: np.ndarray
    start: str
    names: tuple[str, ...]
    source: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.dt_s <= 0:
            raise ValueError(f"Profiles.dt_s must be > 0 seconds, got {self.dt_s}")
        if self.home.ndim != 3 or self.home.shape[2] != len(HOME_CHANNELS):
            raise ValueError(f"Profiles.home must have shape (T, K, {len(HOME_CHANNELS)}), got {self.home.shape}")
        if self.grid.shape != (self.home.shape[0], len(GRID_CHANNELS)):
            raise ValueError(
                f"Profiles.grid must have shape ({self.home.shape[0]}, {len(GRID_CHANNELS)}), got {self.grid.shape}"
            )
        if len(self.names) != self.home.shape[1]:
            raise ValueError(f"Profiles.names has {len(self.names)} entries for {self.home.shape[1]} profiles")
        for label, arr in (("home", self.home), ("grid", self.grid)):
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"Profiles.{label} contains NaN or inf values")

    @property
    def num_profiles(self) -> int:
        return self.home.shape[1]

    @property
    def num_rows(self) -> int:
        return self.home.shape[0]

    @property
    def steps_per_day(self) -> int:
        return 86400 // self.dt_s

    @property
    def cyclic(self) -> bool:
        """True when the data's end joins its start (a typical year, e.g. the default scenario's TMY): homes
        may then read across the end. Measured data is not cyclic: no read may splice its end onto its start."""
        return bool(self.extra.get("cyclic", False))

    @property
    def start_weekday(self) -> int:
        """Weekday of row 0 (Monday = 0): the data's own calendar where it has one (``extra["start_weekday"]``,
        e.g. CityLearn's ``day_type`` column), else the weekday of ``start``."""
        import pandas as pd

        return int(self.extra.get("start_weekday", pd.Timestamp(self.start).weekday()))

    def start_date(self):
        """The calendar date of row 0 (``datetime.date``)."""
        import pandas as pd

        return pd.Timestamp(self.start).date()

    @property
    def start_day_of_year(self) -> int:
        """Day of the year of row 0 (0 = January 1st)."""
        import pandas as pd

        return int(pd.Timestamp(self.start).day_of_year) - 1

    def home_channel(self, name: str) -> np.ndarray:
        """(K, T) view of one per-profile channel."""
        return self.home[:, :, H[name]].T

    def grid_channel(self, name: str) -> np.ndarray:
        """(T,) view of one grid channel."""
        return self.grid[:, G[name]]

    def coarsen(self, dt_s: int) -> Profiles:
        """Aggregate to a coarser resolution ``dt_s`` (a whole multiple of ``self.dt_s``).

        Powers, prices and temperatures are averaged, hot-water litres summed. EV sessions keep their
        times and energy exactly: a coarse row carries the session plugged in at its first connected fine
        row, ``ev_connected`` becomes the share of the coarse row that session is plugged in (partial first
        and last steps), hours to departure are counted from the coarse row's start, and capacity and SoCs
        are the session's. A trailing partial block is dropped.
        """
        if dt_s == self.dt_s:
            return self
        if dt_s < self.dt_s or dt_s % self.dt_s:
            raise ValueError(
                f"coarsen: dt_s must be a whole multiple of the profile resolution {self.dt_s} s, got {dt_s}"
            )
        f = dt_s // self.dt_s
        t_new = self.num_rows // f
        if t_new < 1:
            raise ValueError(f"coarsen: dt_s={dt_s} s is longer than the whole profile ({self.num_rows} rows)")
        blocks = self.home[: t_new * f].reshape(t_new, f, self.num_profiles, len(HOME_CHANNELS))
        home = blocks.mean(axis=1)
        for name in _SUM_CHANNELS:
            home[:, :, H[name]] = blocks[:, :, :, H[name]].sum(axis=1)
        home[:, :, H["ev_connected"]: H["ev_target_soc"] + 1] = _coarsen_sessions(blocks, self.dt_s / 3600.0)
        grid = self.grid[: t_new * f].reshape(t_new, f, len(GRID_CHANNELS)).mean(axis=1)
        return Profiles(dt_s, home.astype(np.float32), grid, self.start, self.names, self.source, dict(self.extra))

    def select(self, indices: np.ndarray | list[int]) -> Profiles:
        """A subset of the profiles (same grid signals)."""
        idx = np.asarray(indices, dtype=np.int64)
        return Profiles(
            self.dt_s, np.ascontiguousarray(self.home[:, idx]), self.grid, self.start, tuple(self.names[i] for i in idx), self.source,
            dict(self.extra),
        )


def _coarsen_sessions(blocks: np.ndarray, row_h: float) -> np.ndarray:
    """EV channels of coarse rows from fine-row blocks (T', f, K, C): the session plugged in at a block's
    first connected row, the share of the block it stays plugged in (its run of connected rows; a second
    session starting later in the same block begins at the next coarse row), its hours to departure from
    the block's start and its capacity and SoCs."""
    conn = blocks[:, :, :, H["ev_connected"]] > 0  # (T', f, K)
    f = conn.shape[1]
    first = conn.argmax(axis=1)  # (T', K) first connected fine row (0 when none)
    any_conn = conn.any(axis=1)
    rows = np.arange(f)[None, :, None]
    in_run = np.cumprod(np.where(rows >= first[:, None, :], conn, True), axis=1) & (rows >= first[:, None, :])
    share = in_run.sum(axis=1) / f
    pick = lambda name: np.take_along_axis(blocks[:, :, :, H[name]], first[:, None, :], axis=1)[:, 0]  # noqa: E731
    out = np.zeros((*first.shape, 5), dtype=np.float32)
    out[..., 0] = share
    out[..., 1] = first * row_h + pick("ev_hours_to_departure")
    for i, name in enumerate(_SESSION_CHANNELS, start=2):
        out[..., i] = pick(name)
    out[~any_conn] = 0.0
    return out


def for_resolution(profiles: Profiles, dt_s: int) -> Profiles:
    """Profiles suited to an env step of ``dt_s`` seconds.

    Coarser steps aggregate the data (:meth:`Profiles.coarsen`). Finer steps keep the data as is:
    the fleet reads it with a zero-order hold (row = elapsed seconds // profile dt), so a 2-second
    regulation env costs no extra memory. ``dt_s`` and the profile resolution must divide one another.
    """
    if dt_s <= 0:
        raise ValueError(f"dt_s must be > 0 seconds, got {dt_s}")
    if dt_s >= profiles.dt_s:
        return profiles.coarsen(dt_s)
    if profiles.dt_s % dt_s:
        raise ValueError(
            f"dt_s={dt_s} s must divide the profile resolution {profiles.dt_s} s (e.g. 1, 2, 4, 60, 900 s)"
        )
    return profiles
