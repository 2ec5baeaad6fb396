"""Settlement report of an evaluation: what each participant earns under a programme, and what the VPP costs.

Each policy's settled DR events (over all evaluated episodes, the same homes in each) are settled by
``envs.programs.settle``. Per participant: earnings by rule, events taken part in and opted out of, average kW
and performance factor, and the home's bill, comfort and EV energy beside the no-control episodes. For the VPP:
the delivered capacity (the fleet's average kW against its baseline over the event hours, opt-outs at 0), the
programme's cost on the evaluated events and a year of them, its cost per delivered kW-year, and the same
capacity's value at the cost of the alternatives in ``configs/settlement/capacity_alternatives.yaml``.

A year is estimated from the evaluated events, pooled as a sample of the programme's seasons (so a season's event
cap does not bound their number): a seasonal payment as settled (it is on average kW), per-event credits and
penalties scaled to ``events_per_year``, a monthly credit to the programme's capacity months, credits capped at
``monthly_cap`` x those months, an upfront incentive spread over ``commitment_years``. A season with no evaluated
event pays nothing here; events outside a programme's seasons are not settled (it would not call them).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..envs.programs import EventResults, Program, event_results, in_programme, performance_factor, settle
from .evaluation import HOME_TOTALS


@dataclass(frozen=True)
class Alternative:
    name: str
    usd_per_kw_year: float
    source: str


def capacity_alternatives() -> list[Alternative]:
    """The shipped capacity alternatives, with their sources."""
    from importlib import resources

    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(OmegaConf.create(
        resources.files("vpprl.configs.settlement").joinpath("capacity_alternatives.yaml").read_text()))
    return [Alternative(a["name"], float(a["usd_per_kw_year"]), a["source"]) for a in raw["alternatives"]]


def annual_factors(program: Program, events: EventResults) -> dict[str, float]:
    """Per settled rule, the factor from the evaluated events to a year of them (see the module docstring)."""
    per_event = program.events_per_year / len(events.hours) if program.events_per_year else 1.0
    months = len(np.unique(events.month))
    factors = {f"capacity_{name}": 1.0 for name in program.seasons}
    factors.update(per_kwh=per_event, shortfall_penalty=per_event, nominated=1.0,
                   monthly_capacity=program.capacity_months() / months,
                   upfront=1.0 / program.commitment_years)
    return factors


def settle_policy(program: Program, records: list, enrolled_kw: np.ndarray) -> tuple[EventResults, dict, np.ndarray]:
    """(events, bill by rule over the evaluated events, annual earnings per participant) of one policy."""
    events = event_results(program, records)
    bill = settle(program, events, enrolled_kw, sample=True)
    factors = annual_factors(program, events)
    credits = sum(factors[k] * v for k, v in bill.items() if k not in ("total", "upfront", "shortfall_penalty"))
    if program.monthly_cap:  # the cap binds month by month: a year of the programme's capped months at most
        credits = np.minimum(credits, program.monthly_cap * program.capacity_months())
    annual = credits + factors["upfront"] * bill["upfront"]
    if "shortfall_penalty" in bill:
        annual = annual + factors["shortfall_penalty"] * bill["shortfall_penalty"]
    return events, bill, annual


def report(program: Program, records: dict[str, list], per_home: dict[str, dict[str, np.ndarray]],
           enrolled_kw: np.ndarray, out_dir: Path, plots: bool = True) -> tuple[str, list[dict], list[dict]]:
    """Settle every policy; write settlement.md, settlement_vpp.csv, settlement_participants.csv (and a plot of
    the participants' annual earnings). Returns (markdown, VPP rows, participant rows)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    reference = per_home.get("no_control")
    vpp_rows, home_rows = [], []
    earnings: dict[str, np.ndarray] = {}
    alternatives = capacity_alternatives()
    outside = 0
    for policy, all_recs in records.items():
        recs = in_programme(program, all_recs)
        outside = len(all_recs) - len(recs)
        if not recs:
            vpp_rows.append({"policy": policy, "events": 0})
            continue
        events, bill, annual = settle_policy(program, recs, enrolled_kw)
        earnings[policy] = annual
        delivered = np.where(events.opted_out, 0.0, events.delivered_kwh)
        hours = float(events.hours.sum())
        fleet_kw = float(delivered.sum()) / hours
        factor = performance_factor(program, events, enrolled_kw)
        rules = [k for k in bill if k not in ("total", "upfront")]
        row = {"policy": policy, "participants": events.delivered_kwh.shape[1], "events": len(events.hours),
               "event_hours": hours, "opt_outs": int(events.opted_out.sum()), "delivered_kw": fleet_kw,
               "delivered_kw_per_home": fleet_kw / events.delivered_kwh.shape[1],
               "performance_factor": float(np.nanmean(factor)) if np.isfinite(factor).any() else float("nan"),
               **{f"paid_{k}": float(bill[k].sum()) for k in rules},
               "paid_evaluated_events": float(bill["total"].sum()), "upfront": float(bill["upfront"].sum()),
               "annual_programme_cost": float(annual.sum()),
               "median_participant_annual": float(np.median(annual))}
        row["cost_per_kw_year"] = row["annual_programme_cost"] / fleet_kw if fleet_kw > 1e-9 else float("nan")
        if program.currency == "USD" and alternatives:
            row["capacity_value_at_peaker"] = fleet_kw * alternatives[0].usd_per_kw_year
        vpp_rows.append(row)
        totals = per_home[policy]
        for i in range(events.delivered_kwh.shape[1]):
            home = {"policy": policy, "home": i, "enrolled_kw": float(enrolled_kw[i]),
                    "events": int((~events.opted_out[:, i]).sum()), "opted_out": int(events.opted_out[:, i].sum()),
                    "delivered_kwh": float(delivered[:, i].sum()), "average_kw": float(delivered[:, i].sum()) / hours,
                    "performance_factor": float(factor[i]),
                    **{f"paid_{k}": float(bill[k][i]) for k in rules},
                    "paid_evaluated_events": float(bill["total"][i]), "upfront": float(bill["upfront"][i]),
                    "annual_earnings": float(annual[i])}
            for key in HOME_TOTALS:
                home[key] = float(totals[key][i])
                if reference is not None:
                    home[f"{key}_vs_no_control"] = float(totals[key][i] - reference[key][i])
            home_rows.append(home)
    _write_csv(out_dir / "settlement_vpp.csv", vpp_rows)
    _write_csv(out_dir / "settlement_participants.csv", home_rows)
    text = _markdown(program, vpp_rows, home_rows, alternatives, reference is not None)
    if outside:
        text += (f"\n{outside} evaluated event(s) per policy fell outside {program.name}'s seasons (it calls none "
                 "there): not settled.\n")
    (out_dir / "settlement.md").write_text(text)
    if plots and earnings:
        _plot(earnings, program, out_dir / "plots" / "settlement_earnings.png")
    return text, vpp_rows, home_rows


def _write_csv(path: Path, rows: list[dict]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def _fmt(value) -> str:
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:,.2f}"
    return str(value)


def _markdown(program: Program, vpp: list[dict], homes: list[dict], alternatives: list[Alternative],
              has_reference: bool) -> str:
    cur = program.currency
    lines = [f"# Settlement under {program.name} ({program.control}-directed, {cur})", ""]
    settled = [r for r in vpp if r.get("events")]
    keys = [k for k in (settled[0] if settled else {}) if k not in ("policy",)]
    lines += ["## VPP", "", "| " + " | ".join(["quantity", *[r["policy"] for r in vpp]]) + " |",
              "|---|" + "---:|" * len(vpp)]
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(_fmt(r.get(key, float("nan"))) for r in vpp) + " |")
    lines += ["", "## Participants (per home, across policies)", "",
              f"| policy | annual earnings ({cur}) p10 / median / p90 | performance factor median | events (opt-outs) | "
              + ("bill ($) vs no control, median | thermal / DHW discomfort vs no control, degC-h | EV unmet vs no "
                 "control, kWh |" if has_reference else "bill ($) | thermal / DHW discomfort, degC-h | EV unmet, kWh |"),
              "|---|---:|---:|---:|---:|---:|---:|"]
    suffix = "_vs_no_control" if has_reference else ""
    for r in settled:
        mine = [h for h in homes if h["policy"] == r["policy"]]
        earn = np.array([h["annual_earnings"] for h in mine])
        pf = np.array([h["performance_factor"] for h in mine])
        bill = np.array([h[f"energy_cost{suffix}"] for h in mine])
        th = sum(h[f"thermal_discomfort_degh{suffix}"] for h in mine)
        dhw = sum(h[f"dhw_discomfort_degh{suffix}"] for h in mine)
        ev = sum(h[f"ev_unmet_kwh{suffix}"] for h in mine)
        p10, p50, p90 = np.percentile(earn, [10, 50, 90])
        pf_txt = _fmt(float(np.nanmedian(pf))) if np.isfinite(pf).any() else "n/a"
        lines.append(f"| {r['policy']} | {p10:,.2f} / {p50:,.2f} / {p90:,.2f} | {pf_txt} | "
                     f"{r['events']} ({r['opt_outs']}) | {np.median(bill):+,.2f} | {th:+,.1f} / {dhw:+,.1f} | "
                     f"{ev:+,.1f} |")
    if cur == "USD":
        lines += ["", "## Capacity alternatives ($/kW-year)", "", "| resource | $/kW-year | source |", "|---|---:|---|"]
        lines += [f"| {a.name} | {a.usd_per_kw_year:,.1f} | {a.source} |" for a in alternatives]
    else:
        lines += ["", f"(The programme pays in {cur}; the capacity alternatives are in USD and not compared.)"]
    lines += ["", "A year is estimated from the evaluated events (see vpprl.training.settlement); a season with no "
                  "evaluated event pays nothing here.", "", "Sources: " + "; ".join(program.citations)]
    return "\n".join(lines) + "\n"


def _plot(earnings: dict[str, np.ndarray], program: Program, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.boxplot(list(earnings.values()), tick_labels=list(earnings))
    ax.set_ylabel(f"annual earnings per participant ({program.currency})")
    ax.set_title(f"{program.name}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
