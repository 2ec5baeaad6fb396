"""Dispatch plots a person would rather look at than read: one PNG per figure, policies side by side."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def _shade_events(ax, trace: dict) -> None:
    on = trace["event"] > 0.5
    if on.any():
        h = trace["hour"]
        step = h[1] - h[0] if len(h) > 1 else 1.0
        for i in np.flatnonzero(on):
            ax.axvspan(h[i], h[i] + step, color="orange", alpha=0.15, lw=0)


def dispatch_figures(traces: dict[str, dict], out_dir: Path, title: str) -> list[Path]:
    """Aggregate load vs limit/baseline with price; battery SoC band; indoor temperature band; EV
    energy delivered vs required. ``traces``: policy name -> trace of one episode."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(traces)
    paths = []

    fig, ax = plt.subplots(figsize=(11, 4.5))
    first = traces[names[0]]
    for name in names:
        ax.plot(traces[name]["hour"], traces[name]["aggregate_kw"], label=name, lw=1.4)
    if np.isfinite(first["feeder_limit_kw"]).any():
        ax.plot(first["hour"], first["feeder_limit_kw"], "k--", lw=1, label="feeder limit")
    _shade_events(ax, first)
    ax.set_xlabel("hour of episode")
    ax.set_ylabel("aggregate net load (kW)")
    ax2 = ax.twinx()
    ax2.step(first["hour"], first["price"], where="post", color="grey", alpha=0.6, label="import price")
    ax2.set_ylabel("price ($/kWh)")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"{title}: aggregate load")
    paths.append(_save(fig, out_dir / "aggregate_load.png"))

    for key, label, fname in (("soc", "battery SoC (fraction)", "battery_soc.png"),
                              ("temp", "indoor temperature (degC)", "indoor_temperature.png")):
        # wide enough for the title even with one panel; constrained layout keeps the suptitle inside
        fig, axes = plt.subplots(1, len(names), figsize=(max(6.4, 3.2 * len(names)), 3.6), sharey=True,
                                 squeeze=False, layout="constrained")
        for ax, name in zip(axes[0], names):
            t = traces[name]
            ax.fill_between(t["hour"], t[f"{key}_p10"], t[f"{key}_p90"], alpha=0.3, label="p10-p90")
            ax.plot(t["hour"], t[f"{key}_p50"], lw=1.2, label="median")
            if key == "temp":
                ax.axhspan(20.0, 24.0, color="green", alpha=0.07, label="default comfort band")
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("hour")
        axes[0][0].set_ylabel(label)
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"{title}: {label} across the fleet", fontsize=10)
        paths.append(_save(fig, out_dir / fname))

    fig, ax = plt.subplots(figsize=(8, 4))
    for name in names:
        ax.plot(traces[name]["hour"], traces[name]["ev_delivered_kwh"], label=f"{name}: delivered")
    ax.plot(first["hour"], first["ev_required_kwh"], "k--", label="required by sessions that ended")
    ax.set_xlabel("hour of episode")
    ax.set_ylabel("cumulative EV energy (kWh)")
    ax.legend(fontsize=8)
    ax.set_title(f"{title}: EV energy")
    paths.append(_save(fig, out_dir / "ev_energy.png"))
    return paths


def _save(fig, path: Path) -> Path:
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
