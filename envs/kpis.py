"""Episode KPIs from cheap per-step scalar accumulators (no per-step history of the fleet).

Two feed the CityLearn 2022 challenge score (see ``training.evaluation.citylearn_score``), as CityLearn
1.3 computed it: ``citylearn_cost`` = sum over steps of max(import price x district net energy, 0) (exports
offset imports inside the district; the clip is on the district), and ``one_minus_load_factor_730h`` = the
mean over consecutive 730-hour blocks from the episode start of 1 - mean / max of the district net (a
shorter last block counts like the others, as in CityLearn 3).
"""

from __future__ import annotations

import numpy as np

from ..data.profiles import G
from .fleet import COST_NAMES, StepOutcome


class KpiTracker:
    """Accumulates fleet-level scalars each step; ``kpis()`` turns them into episode KPIs.

    With ``clocks`` = K > 1 (a fleet that is K independent fleets, see ``envs.fleet``) every fleet-level
    quantity (aggregate, peak, load factor, district cost) is tracked per clock and ``kpis()`` reports the mean
    over the K fleets: the KPIs of one fleet of N / K homes, comparable with a single-clock env of that size."""

    def __init__(self, dt_h: float, clocks: int = 1) -> None:
        self.dt_h = dt_h
        self.clocks = int(clocks)
        self.reset()

    def reset(self) -> None:
        k = self.clocks
        self.steps = 0
        self.energy_cost, self.import_kwh, self.export_kwh, self.emissions_kg = (np.zeros(k) for _ in range(4))
        self.peak_kw = np.full(k, -np.inf)
        self.sum_agg_kw, self.ramping_kw, self.citylearn_cost = (np.zeros(k) for _ in range(3))
        self.prev_agg_kw: np.ndarray | None = None
        self.degradation_cost = self.pv_curtailed_kwh = 0.0
        self.ev_required_kwh, self.ev_unmet_kwh = np.zeros(k), np.zeros(k)  # per clock, for the unmet share
        self.block_steps = max(1, round(730.0 / self.dt_h))
        self.block_sum = np.zeros(k)
        self.block_n = 0
        self.block_max = np.full(k, -np.inf)
        self.block_terms: list[np.ndarray] = []
        self.costs = dict.fromkeys(COST_NAMES, 0.0)

    def update(self, o: StepOutcome, cost_totals: dict[str, float]) -> float:
        """Add one step; returns the aggregate net load (kW) of all homes."""
        dt_h = self.dt_h
        net = o.net_kw.reshape(self.clocks, -1)
        imp_kwh = np.maximum(net, 0.0).sum(axis=1, dtype=np.float64) * dt_h
        agg = net.sum(axis=1, dtype=np.float64)
        exp_kwh = imp_kwh - agg * dt_h
        g = o.grid.reshape(self.clocks, -1).astype(np.float64)
        price_import, price_export = g[:, G["price_import"]], g[:, G["price_export"]]
        self.steps += 1
        self.import_kwh += imp_kwh
        self.export_kwh += exp_kwh
        self.energy_cost += price_import * imp_kwh - price_export * exp_kwh
        self.emissions_kg += g[:, G["carbon_kg_per_kwh"]] * imp_kwh
        self.citylearn_cost += np.maximum(price_import * agg * dt_h, 0.0)
        self.block_sum += agg
        np.maximum(self.block_max, agg, out=self.block_max)
        self.block_n += 1
        if self.block_n == self.block_steps:
            self.block_terms.append(self._one_minus_load_factor())
            self.block_sum = np.zeros(self.clocks)
            self.block_n = 0
            self.block_max = np.full(self.clocks, -np.inf)
        np.maximum(self.peak_kw, agg, out=self.peak_kw)
        self.sum_agg_kw += agg
        if self.prev_agg_kw is not None:
            self.ramping_kw += np.abs(agg - self.prev_agg_kw)
        self.prev_agg_kw = agg
        self.degradation_cost += float(o.degradation_cost.sum(dtype=np.float64))
        self.pv_curtailed_kwh += float(o.pv_curtailed_kwh.sum(dtype=np.float64))
        self.ev_required_kwh += o.ev_required_kwh_departed
        self.ev_unmet_kwh += o.costs["ev_unmet_kwh"].reshape(self.clocks, -1).sum(axis=1, dtype=np.float64)
        for k, v in cost_totals.items():
            self.costs[k] += v
        return float(agg[0]) if self.clocks == 1 else float(agg.sum())

    def _one_minus_load_factor(self) -> np.ndarray:
        """1 - mean / max of the district net over the open block, per clock (NaN where its max is 0)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.block_max == 0, np.nan, 1.0 - (self.block_sum / self.block_n) / self.block_max)

    def kpis(self) -> dict[str, float]:
        """Episode KPIs: fleet totals (the mean over the fleets, with several clocks)."""
        k = self.clocks
        mean = self.sum_agg_kw / max(self.steps, 1)
        peak = self.peak_kw if self.steps else np.zeros(k)
        with np.errstate(divide="ignore", invalid="ignore"):
            load_factor = np.where(peak > 0, mean / peak, np.nan)
        blocks = self.block_terms + ([self._one_minus_load_factor()] if self.block_n else [])
        out = {
            "energy_cost": self.energy_cost, "import_kwh": self.import_kwh, "export_kwh": self.export_kwh,
            "peak_kw": peak, "mean_load_kw": mean, "load_factor": load_factor,
            "ramping_kw": self.ramping_kw, "emissions_kg": self.emissions_kg,
            "citylearn_cost": self.citylearn_cost,
            "one_minus_load_factor_730h": np.mean(blocks, axis=0) if blocks else np.full(k, np.nan),
        }
        out = {name: float(np.mean(value)) for name, value in out.items()}
        out.update({
            "degradation_cost": self.degradation_cost / k, "pv_curtailed_kwh": self.pv_curtailed_kwh / k,
            "discomfort_degh": self.costs["thermal_discomfort_degh"] / k,
            "ev_required_kwh": float(self.ev_required_kwh.mean()),
            "ev_unmet_fraction": float(np.mean([unmet / required if required > 0 else 0.0 for unmet, required
                                                in zip(self.ev_unmet_kwh, self.ev_required_kwh)])),
        })
        out.update({name: total / k for name, total in self.costs.items()})
        return out
