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
    """Accumulates fleet-level scalars each step; ``kpis()`` turns them into episode KPIs."""

    def __init__(self, dt_h: float) -> None:
        self.dt_h = dt_h
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.energy_cost = self.import_kwh = self.export_kwh = self.emissions_kg = 0.0
        self.peak_kw = -np.inf
        self.sum_agg_kw = self.ramping_kw = 0.0
        self.prev_agg_kw: float | None = None
        self.degradation_cost = self.pv_curtailed_kwh = self.ev_required_kwh = 0.0
        self.citylearn_cost = 0.0
        self.block_steps = max(1, round(730.0 / self.dt_h))
        self.block_sum = self.block_n = 0
        self.block_max = -np.inf
        self.block_terms: list[float] = []
        self.costs = dict.fromkeys(COST_NAMES, 0.0)

    def update(self, o: StepOutcome, cost_totals: dict[str, float]) -> float:
        """Add one step; returns the aggregate net load (kW)."""
        dt_h = self.dt_h
        net = o.net_kw
        imp = np.maximum(net, 0.0)
        imp_kwh = float(imp.sum(dtype=np.float64)) * dt_h
        agg = float(net.sum(dtype=np.float64))
        exp_kwh = imp_kwh - agg * dt_h
        g = o.grid
        self.steps += 1
        self.import_kwh += imp_kwh
        self.export_kwh += exp_kwh
        self.energy_cost += float(g[G["price_import"]] * imp_kwh - g[G["price_export"]] * exp_kwh)
        self.emissions_kg += float(g[G["carbon_kg_per_kwh"]] * imp_kwh)
        self.citylearn_cost += max(float(g[G["price_import"]]) * agg * dt_h, 0.0)
        self.block_sum += agg
        self.block_max = max(self.block_max, agg)
        self.block_n += 1
        if self.block_n == self.block_steps:
            self.block_terms.append(self._one_minus_load_factor())
            self.block_sum = self.block_n = 0
            self.block_max = -np.inf
        self.peak_kw = max(self.peak_kw, agg)
        self.sum_agg_kw += agg
        if self.prev_agg_kw is not None:
            self.ramping_kw += abs(agg - self.prev_agg_kw)
        self.prev_agg_kw = agg
        self.degradation_cost += float(o.degradation_cost.sum(dtype=np.float64))
        self.pv_curtailed_kwh += float(o.pv_curtailed_kwh.sum(dtype=np.float64))
        self.ev_required_kwh += o.ev_required_kwh_departed
        for k, v in cost_totals.items():
            self.costs[k] += v
        return agg

    def _one_minus_load_factor(self) -> float:
        """1 - mean / max of the district net over the open block (NaN where its max is 0)."""
        if self.block_max == 0:
            return float("nan")
        return 1.0 - (self.block_sum / self.block_n) / self.block_max

    def kpis(self) -> dict[str, float]:
        mean = self.sum_agg_kw / max(self.steps, 1)
        peak = self.peak_kw if self.steps else 0.0
        out = {
            "energy_cost": self.energy_cost, "import_kwh": self.import_kwh, "export_kwh": self.export_kwh,
            "peak_kw": peak, "mean_load_kw": mean,
            "load_factor": mean / peak if peak > 0 else float("nan"),
            "ramping_kw": self.ramping_kw, "emissions_kg": self.emissions_kg,
            "citylearn_cost": self.citylearn_cost,
            "one_minus_load_factor_730h": float(np.mean(self.block_terms + ([self._one_minus_load_factor()]
                                                                            if self.block_n else [])))
            if self.block_terms or self.block_n else float("nan"),
            "degradation_cost": self.degradation_cost, "pv_curtailed_kwh": self.pv_curtailed_kwh,
            "discomfort_degh": self.costs["thermal_discomfort_degh"],
            "ev_required_kwh": self.ev_required_kwh,
            "ev_unmet_fraction": (self.costs["ev_unmet_kwh"] / self.ev_required_kwh
                                  if self.ev_required_kwh > 0 else 0.0),
        }
        out.update(self.costs)
        return out
