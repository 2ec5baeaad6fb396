"""Where a DER aggregation may bid: each grid operator's FERC Order 2222 status, by service and date.

A scenario that bids a service its region has not opened to DER aggregations on its date is refused at
start-up, naming the region, the service and the date (``check_eligibility``), unless explicitly overridden.
The market files (``configs/market/<name>.yaml``) carry the dates and their sources; dates not checked against
an operator's tariff say so in their citations.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from importlib import resources

from omegaconf import OmegaConf

SERVICES = ("energy", "capacity", "regulation", "reserves")
#: the wholesale service each task would bid (peak shaving is a local, retail matter: none)
TASK_SERVICES = {"price_arbitrage": "energy", "demand_response": "capacity", "frequency_regulation": "regulation",
                 "market_bid": "energy"}


@dataclass(frozen=True)
class MarketRules:
    name: str
    region: str
    min_aggregation_kw: float
    services: dict[str, dt.date | None]  # service -> first date open to DER aggregations (None: not scheduled)
    citations: tuple[str, ...]


def market_names() -> list[str]:
    root = resources.files("vpprl.configs.market")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_market(name: str) -> MarketRules:
    """The rules of one grid operator; ``ValueError`` lists the shipped ones for an unknown name."""
    names = market_names()
    if name not in names:
        raise ValueError(f"market must be one of {names}; got {name!r}")
    raw = OmegaConf.to_container(OmegaConf.create(
        resources.files("vpprl.configs.market").joinpath(f"{name}.yaml").read_text()))
    services = {}
    for service in SERVICES:
        value = raw["services"].get(service)
        services[service] = None if value is None else dt.date.fromisoformat(str(value))
    return MarketRules(raw["name"], raw["region"], float(raw["min_aggregation_kw"]), services,
                       tuple(raw.get("citations", ())))


def check_eligibility(market: MarketRules, tasks: list[str], on: dt.date, aggregation_kw: float,
                      override: bool = False) -> list[str]:
    """Refuse (``ValueError``) a task whose service the region has not opened on ``on``, or an aggregation below
    the region's minimum size; with ``override`` the same findings come back as warnings instead."""
    problems = []
    for task in tasks:
        service = TASK_SERVICES.get(task)
        if service is None:
            continue
        opens = market.services[service]
        if opens is None or on < opens:
            when = "has not scheduled it" if opens is None else f"opens it on {opens.isoformat()}"
            problems.append(f"market {market.name}: task {task} bids {service}, which {market.region} does not open "
                            f"to DER aggregations on {on.isoformat()} ({market.region} {when})")
    if aggregation_kw < market.min_aggregation_kw:
        problems.append(f"market {market.name}: the aggregation's {aggregation_kw:.1f} kW is below {market.region}'s "
                        f"minimum of {market.min_aggregation_kw:g} kW")
    if problems and not override:
        raise ValueError("; ".join(problems) + " (market_override=true to evaluate anyway)")
    return problems
