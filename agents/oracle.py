"""Perfect-foresight oracle and model-predictive control, both on the fleet LP (``planning``).

* :class:`Oracle` plans the whole remaining episode once, at ``reset``, from the true future inputs:
  the upper bound every learned policy is measured against.
* :class:`Mpc` re-plans every ``replan_every_h`` over ``horizon_h`` from forecasts a real operator has:
  the mean of the same time of day over the past ``history_days`` for loads, PV, hot water and weather
  (seasonal-naive forecast), the public tariff,
  announced DR events, EV sessions only once plugged in (with their declared departure and target),
  and no knowledge of the future regulation signal. Comfort bands are tightened by ``margins_c``
  (home, tank) against forecast error, as robust MPC does.
Both act through :class:`SetpointPolicy`, so their plans are replayed in the env and every KPI they
report is the env's own.
"""

from __future__ import annotations

import numpy as np

from ..data.profiles import G
from ..envs.tasks import DemandResponse, FrequencyRegulation
from ..envs.vpp_env import VppEnv
from .planning import InitialState, Plan, TaskSignals, plan_fleet
from .policy import NoControl, SetpointPolicy


def _signals(env: VppEnv, start: int, steps: int, regulation: np.ndarray | None):
    dr = next((t for t in env.tasks if isinstance(t, DemandResponse)), None)
    fr = next((t for t in env.tasks if isinstance(t, FrequencyRegulation)), None)
    if dr is None and fr is None:
        return TaskSignals()
    active = None
    if dr is not None:
        active = np.zeros(steps, bool)
        upto = min(steps, len(dr.active) - start)
        active[:upto] = dr.active[start:start + upto]
    return TaskSignals(dr_active=active, reg_signal=regulation, start_step=start)


def _terminal(env: VppEnv) -> tuple[float, np.ndarray] | None:
    """The env's terminal-value settings (price, stored energy at the episode start)."""
    return env.terminal_value_settings()


class Oracle(SetpointPolicy):
    """Perfect foresight over the rest of the episode, solved once at ``reset``."""

    name = "oracle"
    sees_future = True

    def __init__(self, time_limit_s: float = 600.0) -> None:
        self.time_limit_s = time_limit_s
        self.plan: Plan | None = None

    def reset(self, env: VppEnv) -> None:
        if not env.perfect_foresight:
            raise ValueError("the oracle plans on the true future: call env.set_perfect_foresight(True) before "
                             "env.reset(), so that its plan is replayed on the inputs it was made for")
        super().reset(env)
        f = env.fleet
        steps = env.episode_steps - f.t
        inputs = [f.scaled_inputs(f.t + k) for k in range(steps)]
        fr = next((t for t in env.tasks if isinstance(t, FrequencyRegulation)), None)
        regulation = fr.signal[f.t:f.t + steps] if fr is not None else None
        ends = f.start_s + (f.t + 1 + np.arange(steps)) * f.dt_s
        after = f.scaled_inputs(f.t + steps)["ev_connected"]
        self.plan = plan_fleet(f, env.tasks, env.config.cost_weights, inputs, InitialState.of(f),
                               _signals(env, f.t, steps, regulation), ends, self.time_limit_s,
                               ev_connected_after=after, terminal=_terminal(env))
        self._t0 = f.t

    def setpoints(self) -> np.ndarray:
        return self.plan.setpoints_kw[self.env.fleet.t - self._t0]


class Mpc(SetpointPolicy):
    """Receding-horizon LP on forecasts (see the module docstring)."""

    name = "mpc"

    def __init__(self, horizon_h: float = 24.0, replan_every_h: float = 1.0, time_limit_s: float = 120.0,
                 history_days: int = 7, margins_c: tuple[float, float] = (0.5, 5.0)) -> None:
        if not 0 < replan_every_h <= horizon_h:
            raise ValueError(f"Mpc: need 0 < replan_every_h <= horizon_h, got {replan_every_h}, {horizon_h}")
        self.horizon_h = horizon_h
        self.replan_every_h = replan_every_h
        self.time_limit_s = time_limit_s
        self.history_days = history_days
        self.margins_c = margins_c
        self.solve_s: list[float] = []

    def reset(self, env: VppEnv) -> None:
        super().reset(env)
        f = env.fleet
        self._horizon = max(1, int(round(self.horizon_h * 3600 / f.dt_s)))
        self._every = max(1, int(round(self.replan_every_h * 3600 / f.dt_s)))
        self._day = max(1, 86400 // f.dt_s)
        self._plan: np.ndarray | None = None
        self._planned_at = -10**9
        self.solve_s = []

    def _forecast(self, step: int, now: int) -> dict:
        """What is known at step ``now`` about step ``step``."""
        f = self.env.fleet
        first = max(1, -(-(step - now + 1) // self._day))  # the most recent same-time day already past
        days = [f.scaled_inputs(step - d * self._day) for d in range(first, first + self.history_days)]
        out = {k: np.mean([x[k] for x in days], axis=0)
               for k in ("base_load_kw", "pv_available_kw", "dhw_draw_l", "flex_baseline_kw")}
        grid = np.mean([x["grid"] for x in days], axis=0)
        if f.forecaster.config.prices == "published":  # the tariff is public
            published = f.grid_at(step)
            for key in ("price_import", "price_export"):
                grid[G[key]] = published[G[key]]
        out["grid"] = grid
        ev = f.ev
        elapsed_h = (step - now) * f.dt_h
        stays = ev.connected & (ev.hours_to_departure - elapsed_h > 1e-6)
        out["ev_connected"] = stays
        left_h = ev.hours_to_departure - elapsed_h
        out["ev_available"] = np.where(stays, ev.available if step == now else np.clip(left_h / f.dt_h, 0.0, 1.0), 0.0)
        out["ev_hours_to_departure"] = np.where(stays, left_h, 0.0)
        out["ev_capacity_kwh"] = np.where(stays, ev.capacity_kwh, 0.0)
        safe_cap = np.maximum(ev.capacity_kwh, 1e-9)
        out["ev_arrival_soc"] = np.where(stays, ev.energy_kwh / safe_cap, 0.0)
        out["ev_target_soc"] = np.where(stays, ev.target_kwh / safe_cap, 0.0)
        return out

    def setpoints(self) -> np.ndarray:
        f = self.env.fleet
        now = f.t
        if now - self._planned_at >= self._every:
            steps = self._horizon
            inputs = [self._forecast(now + k, now) for k in range(steps)]
            fr = next((t for t in self.env.tasks if isinstance(t, FrequencyRegulation)), None)
            regulation = None
            if fr is not None:
                regulation = np.zeros(steps)
                regulation[0] = fr.signal[min(now, fr.episode_steps)]
            ends = f.start_s + (now + 1 + np.arange(steps)) * f.dt_s
            plan = plan_fleet(f, self.env.tasks, self.env.config.cost_weights, inputs, InitialState.of(f),
                              _signals(self.env, now, steps, regulation), ends, self.time_limit_s,
                              terminal=_terminal(self.env), margins_c=self.margins_c)
            self.solve_s.append(plan.solve_s)
            self._plan, self._planned_at = plan.setpoints_kw, now
        return self._plan[now - self._planned_at]
