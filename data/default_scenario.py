"""The default scenario: real data that ships inside installed packages, plus calibrated generators.

* Weather and irradiance: pvlib's bundled typical years: Greensboro, NC (723170TYA.CSV, the default),
  Miami, FL (12839.tm2) and Sand Point, AK (703165TY.csv) as held-out climates.
* PV output per kWp: pvlib (solar position, transposition, SAPM cell temperature, PVWatts DC)
  for several roof orientations, one per profile group.
* Household load shape: BDEW 2025 standard load profile H25 (15-min, shipped by demandlib).
* C&I flexible load baseline: BDEW 2025 commercial profile G25.
* EV sessions, hot-water draws, per-home load diversity: :mod:`vpprl.data.synthetic`.
* Prices: an illustrative time-of-use tariff; carbon: an illustrative daily profile.
Everything is listed with its provenance in data/PROVENANCE.md. No file outside the installed
packages is read and nothing is downloaded.
"""

from __future__ import annotations

import functools
import importlib.resources

import numpy as np
import pandas as pd

from . import synthetic
from .profiles import GRID_CHANNELS, HOME_CHANNELS, H, Profiles

DT_S = 900  # native resolution of the default scenario: 15 minutes (BDEW's resolution)
YEAR = 2023  # a non-leap nominal year for calendars (TMY months come from different years)
ANNUAL_BASE_LOAD_KWH = 5500.0  # household load excluding space conditioning and water heating
ROOF_ORIENTATIONS = ((180.0, 25.0), (135.0, 25.0), (225.0, 25.0), (270.0, 20.0))  # (azimuth, tilt) deg
TOU_PRICES = {"off_peak": 0.12, "mid_peak": 0.20, "on_peak": 0.38}  # $/kWh
EXPORT_PRICE = 0.05  # $/kWh


#: typical-year weather shipped inside pvlib: the default climate and two held-out ones
CLIMATES = {"greensboro": "723170TYA.CSV",  # Greensboro NC, TMY3: mixed, heating and cooling
            "miami": "12839.tm2",  # Miami FL, TMY2: hot and humid, cooling all year
            "sand_point": "703165TY.csv"}  # Sand Point AK, TMY3: cold, heating all year
DEFAULT_CLIMATE = "greensboro"


def check_climate(field_name: str, climate: str) -> None:
    if climate not in CLIMATES:
        raise ValueError(f"{field_name} must be one of {sorted(CLIMATES)} (typical years shipped in pvlib), "
                         f"got {climate!r}")


def _tmy_weather(climate: str = DEFAULT_CLIMATE) -> tuple[pd.DataFrame, dict]:
    """Hourly typical-year weather of ``climate``: columns temp_air, ghi, dni, dhi, wind_speed, labelled at
    the end of the hour each value averages (the TMY3 convention), in the nominal year YEAR."""
    from pvlib.iotools import read_tmy2, read_tmy3

    path = str(importlib.resources.files("pvlib") / "data" / CLIMATES[climate])
    if path.endswith(".tm2"):  # TMY2: pvlib labels an hour at its start; tenths of degC and of m/s
        raw, meta = read_tmy2(path)
        idx = pd.DatetimeIndex([t.replace(year=YEAR) for t in raw.index]) + pd.Timedelta(hours=1)
        data = pd.DataFrame({"temp_air": raw["DryBulb"].to_numpy() / 10.0, "ghi": raw["GHI"].to_numpy(),
                             "dni": raw["DNI"].to_numpy(), "dhi": raw["DHI"].to_numpy(),
                             "wind_speed": raw["Wspd"].to_numpy() / 10.0}, index=idx)
    else:
        data, meta = read_tmy3(path, coerce_year=YEAR, map_variables=True)
    return data.sort_index(), meta


def _pv_per_kwp(weather: pd.DataFrame, meta: dict, index: pd.DatetimeIndex) -> np.ndarray:
    """AC kW per kWp for each roof orientation at ``index``; shape (len(ROOF_ORIENTATIONS), len(index))."""
    import pvlib

    loc = pvlib.location.Location(meta["latitude"], meta["longitude"], altitude=meta["altitude"])
    # TMY values are hourly averages labelled at the hour's end: evaluate the sun mid-interval.
    mid = weather.index - pd.Timedelta(minutes=30)
    solpos = loc.get_solarposition(mid)
    params = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"]["open_rack_glass_polymer"]
    out = []
    for azimuth, tilt in ROOF_ORIENTATIONS:
        poa = pvlib.irradiance.get_total_irradiance(
            tilt, azimuth, solpos["apparent_zenith"].to_numpy(), solpos["azimuth"].to_numpy(),
            weather["dni"].to_numpy(), weather["ghi"].to_numpy(), weather["dhi"].to_numpy())
        poa_global = np.nan_to_num(np.asarray(poa["poa_global"], dtype=float))
        t_cell = pvlib.temperature.sapm_cell(poa_global, weather["temp_air"].to_numpy(),
                                             weather["wind_speed"].to_numpy(), **params)
        dc = pvlib.pvsystem.pvwatts_dc(poa_global, t_cell, pdc0=1.0, gamma_pdc=-0.004)
        ac = np.clip(np.asarray(dc) * 0.86 * 0.96, 0.0, 1.0)  # PVWatts default 14% losses, 96% inverter
        out.append(_to_index(pd.Series(ac, index=mid), index))
    return np.stack(out)


def _mid_hour(series: pd.Series) -> pd.Series:
    """A TMY column labelled at the middle of the hour it averages (TMY labels an hour at its end)."""
    return pd.Series(series.to_numpy(dtype=float), index=series.index - pd.Timedelta(minutes=30))


def _to_index(series: pd.Series, index: pd.DatetimeIndex) -> np.ndarray:
    """Interpolate an hourly series onto ``index`` (wrapping around the year's ends)."""
    x = (series.index - series.index[0]).total_seconds().to_numpy()
    xi = (index - series.index[0]).total_seconds().to_numpy()
    period = 365 * 86400.0
    return np.interp(xi % period, x, series.to_numpy(), period=period)


def _bdew_profile(name: str, index: pd.DatetimeIndex) -> np.ndarray:
    """A BDEW 2025 standard load profile (h25, g25, ...) on ``index``, normalised to mean 1."""
    path = importlib.resources.files("demandlib") / "bdew" / "bdew_data" / f"{name}.csv"
    raw = pd.read_csv(str(path), header=[0, 1], index_col=0)
    values = raw.to_numpy(dtype=float)  # (96 quarter hours, 12 months x [SA, FT, WT])
    month = index.month.to_numpy() - 1
    weekday = index.day_of_week.to_numpy()
    day_type = np.where(weekday == 5, 0, np.where(weekday == 6, 1, 2))  # SA, FT (Sunday), WT
    quarter = (index.hour.to_numpy() * 4 + index.minute.to_numpy() // 15)
    profile = values[quarter, month * 3 + day_type]
    return profile / profile.mean()


def _tou_prices(index: pd.DatetimeIndex) -> np.ndarray:
    hour = index.hour.to_numpy()
    weekday = index.day_of_week.to_numpy() < 5
    on_peak = weekday & (hour >= 16) & (hour < 21)
    mid_peak = (hour >= 7) & (hour < 16) | (~weekday & (hour >= 16) & (hour < 21))
    return np.where(on_peak, TOU_PRICES["on_peak"], np.where(mid_peak, TOU_PRICES["mid_peak"],
                                                                TOU_PRICES["off_peak"]))


def _carbon(index: pd.DatetimeIndex) -> np.ndarray:
    """Illustrative marginal carbon intensity: 0.45 kg/kWh at night, lower at midday solar, higher
    in the evening ramp."""
    h = index.hour.to_numpy() + index.minute.to_numpy() / 60.0
    return 0.42 - 0.12 * np.exp(-((h - 13.0) / 3.0) ** 2) + 0.08 * np.exp(-((h - 19.0) / 2.0) ** 2)


@functools.lru_cache(maxsize=4)
def default_profiles(num_profiles: int = 64, seed: int = 2026, climate: str = DEFAULT_CLIMATE) -> Profiles:
    """Profiles of the default scenario: one year at 15-minute resolution, ``num_profiles`` homes, in the
    typical-year weather of ``climate`` (see ``CLIMATES``; the same homes in every climate).

    Deterministic for a given (num_profiles, seed, climate); cached because building takes ~1 s.
    """
    if not 1 <= num_profiles <= 4096:
        raise ValueError(f"num_profiles must be in [1, 4096], got {num_profiles}")
    check_climate("climate", climate)
    rng = np.random.default_rng(seed)
    steps_per_day = 86400 // DT_S
    n_days = 365
    weather, meta = _tmy_weather(climate)
    tz = f"Etc/GMT{-int(meta['TZ']):+d}"  # the station's standard time, as TMY files keep it
    index = pd.date_range(f"{YEAR}-01-01", periods=n_days * steps_per_day, freq=f"{DT_S}s", tz=tz)
    t = len(index)

    home = np.zeros((t, num_profiles, len(HOME_CHANNELS)), dtype=np.float32)  # time-major
    mean_kw = ANNUAL_BASE_LOAD_KWH / 8760.0
    h25 = _bdew_profile("h25", index)
    home[:, :, H["base_load_kw"]] = (mean_kw * h25[None, :] * synthetic.load_diversity(rng, num_profiles, t)).T
    # every weather-driven channel on one time base: hourly values at their hour's middle, read at the
    # middle of each 15-minute step (PV, irradiance and temperature stay aligned with each other)
    step_mid = index + pd.Timedelta(seconds=DT_S / 2)
    pv = _pv_per_kwp(weather, meta, step_mid)
    home[:, :, H["pv_kw_per_kwp"]] = pv[np.arange(num_profiles) % len(ROOF_ORIENTATIONS)].T
    home[:, :, H["dhw_draw_l"]] = synthetic.hot_water_draws(rng, num_profiles, n_days, steps_per_day).T
    home[:, :, H["flex_load_kw"]] = _bdew_profile("g25", index)[:, None]
    ev = synthetic.ev_sessions(rng, num_profiles, n_days, steps_per_day)
    home[:, :, H["ev_connected"]: H["ev_target_soc"] + 1] = ev.transpose(1, 0, 2)

    grid = np.zeros((t, len(GRID_CHANNELS)))
    grid[:, 0] = _to_index(_mid_hour(weather["temp_air"]), step_mid)
    grid[:, 1] = np.clip(_to_index(_mid_hour(weather["ghi"]), step_mid), 0.0, None)
    grid[:, 2] = _tou_prices(index)
    grid[:, 3] = EXPORT_PRICE
    grid[:, 4] = _carbon(index)
    return Profiles(
        dt_s=DT_S, home=home, grid=grid, start=f"{YEAR}-01-01", names=tuple(f"default_{k}" for k in range(num_profiles)),
        source=f"vpprl default scenario ({climate} typical year from pvlib, BDEW H25/G25, synthetic EV and hot water)",
        extra={"latitude": meta["latitude"], "longitude": meta["longitude"], "cyclic": True},  # a typical year
    )
