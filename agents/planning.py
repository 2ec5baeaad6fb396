"""The fleet as a linear program over a horizon: the env's device models, costs and task objectives.

Used by the perfect-foresight oracle (true inputs, whole episode) and by MPC (forecast inputs,
receding horizon). Every equation mirrors the env's discretisation (see each device module):
    battery   E' = E + eta_c*c*dt - d/eta_d*dt, E in [E_min, E_max], reserve shortfall as a cost
    EV        E' = E + eta*c*dt - d/eta*dt while plugged in; arrival fixes E; unmet at unplug is a cost;
              V2G only in sessions that arrive above the V2G floor, and then never below it
    thermostat T' = a*T + (1-a)*(T_out + R*gains) + k_t*P, k_t = (1-a)*R*(+COP_heat | -COP_cool)
    water heater T' = (1-lam)*((1-f)*T + f*T_in) + lam*T_amb + g*P,  T' <= T_max
    flex load  B' = B + (baseline - P)*dt, |B| <= B_max, settled (and reset) at midnight
    net = base + battery + EV - PV + water heater + heat pump + flex = import - export
Discomfort, site-limit, reserve, EV and flex costs use the env's cost weights. Task objectives:
price arbitrage (bill), peak shaving (overshoot penalty), demand response (credit and shortfall
against the task's customer baseline, an affine function of the planned load: ``DemandResponse.plan_terms``),
frequency regulation (|error| against the hour's declared point, the previous hour's mean planned load, +
signal * capacity: ``FrequencyRegulation.declared_terms``), a day-ahead market commitment (paid price x min(delivery,
commitment), charged for shortfall, delivery against a forecast fixed at reset: ``MarketBid.commit_terms``, exact),
plus the constant credits, so the objective is the
env's return. Approximations (documented where they arise): CityLearn battery curves (``linear_battery``: an
upper bound), DR with a capped ratio adjustment (CAISO, NYISO) or Match Day's load-matched days (both bounded:
``Plan.gap_bound``, from ``DemandResponse.plan_gap_bound``) and DR days after the first of a multi-day episode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.profiles import G
from ..envs.devices.battery import linear_battery
from ..envs.devices.thermostat import cop_cooling, cop_heating
from ..envs.fleet import BATTERY, EV, FLEX, NUM_DEVICE_CLASSES, PV, THERMOSTAT, WATER_HEATER, Fleet
from ..envs.scenario import CostWeights
from ..envs.tasks import DemandResponse, FrequencyRegulation, MarketBid, PeakShaving, PriceArbitrage, Task
from ..envs.terminal import COP_REF
from .lp import LinearProgram


@dataclass
class InitialState:
    """Device states at the start of the horizon (all (N,) arrays)."""

    battery_kwh: np.ndarray
    ev_connected: np.ndarray
    ev_kwh: np.ndarray
    ev_target_kwh: np.ndarray
    indoor_c: np.ndarray
    tank_c: np.ndarray
    flex_backlog_kwh: np.ndarray

    @classmethod
    def of(cls, fleet: Fleet) -> InitialState:
        """The fleet's state at the start of its current step (after that step's sessions began: an EV arriving now
        is in it with its arrival energy)."""
        ev = fleet.ev
        return cls(fleet.battery.energy_kwh.astype(float), ev.connected.copy(), ev.energy_kwh.astype(float),
                   ev.target_kwh.astype(float), fleet.thermostat.temp_c.astype(float),
                   fleet.water_heater.temp_c.astype(float), fleet.flex.backlog_kwh.astype(float))


@dataclass
class TaskSignals:
    """Per-step task inputs over the horizon (arrays of length T)."""

    dr_active: np.ndarray | None = None
    start_step: int = 0  # episode step of the plan's first step (DR baselines are placed on the episode's clock)
    reg_signal: np.ndarray | None = None


@dataclass
class Plan:
    setpoints_kw: np.ndarray  # (T, D, N)
    objective: float  # the LP's minimum: minus the return the env should give, up to `offset`
    solve_s: float
    n_vars: int
    gap_bound: float = 0.0  # $ bound on |env return + objective| from non-affine DR baselines and score-paid
    # regulation capacity (inf: unbounded)


def _stack(inputs: list[dict], key: str) -> np.ndarray:
    return np.stack([np.asarray(x[key], dtype=np.float64) for x in inputs])


def plan_fleet(fleet: Fleet, tasks: list[Task], weights: CostWeights, inputs: list[dict], state: InitialState,
               signals: TaskSignals, step_end_seconds: np.ndarray, time_limit_s: float = 600.0,
               ev_connected_after: np.ndarray | None = None, terminal: tuple | None = None,
               margins_c: tuple[float, float] = (0.0, 0.0)) -> Plan:
    """Optimal setpoints for ``len(inputs)`` steps from ``state`` under the given inputs.

    ``inputs[t]`` is ``Fleet.scaled_inputs`` of step t (or a forecast of it); ``step_end_seconds[t]``
    the clock at the end of step t (for the flex load's midnight settlement). ``ev_connected_after``:
    who is plugged in right after the horizon (None: every session runs on). ``terminal``: (price,
    heating-season mask, stored energy at the episode start) to value end-of-horizon storage as the env
    does (``envs.terminal``); ``Plan.objective`` then equals minus the env's return. ``margins_c``: (home,
    tank) degrees by which to tighten the comfort bands, for planning on uncertain forecasts.
    """
    T, n, dt = len(inputs), fleet.n, fleet.dt_h
    lay = fleet.layout
    lp = LinearProgram()
    grid = np.stack([np.asarray(x["grid"], dtype=np.float64) for x in inputs])  # (T, G)
    base = _stack(inputs, "base_load_kw")
    net_terms: list = []

    # --- battery -----------------------------------------------------------------------------
    b = lay.battery
    f64 = lambda a: np.asarray(a, dtype=np.float64)
    cap = f64(b.capacity_kwh)
    lb = linear_battery(b, dt)
    bc = lp.var((T, n), 0.0, lb.max_charge_kw, cost=f64(b.degradation_cost_per_kwh) * dt)
    bd = lp.var((T, n), 0.0, lb.max_discharge_kw, cost=f64(b.degradation_cost_per_kwh) * dt)
    # index 0 is the measured state: fixed by equality, not bounded (float32 telemetry may sit a
    # rounding error outside the limits)
    be = lp.var((T + 1, n), np.vstack([np.full((1, n), -np.inf), np.broadcast_to(f64(b.soc_min) * cap, (T, n))]),
                np.vstack([np.full((1, n), np.inf), np.broadcast_to(f64(b.soc_max) * cap, (T, n))]))
    lp.eq([(1.0, be[0])], state.battery_kwh)
    # E' = keep * (E + eta_c c dt - d dt / eta_d): the standby loss acts on the energy after the step's flow
    keep = lb.keep_per_step
    lp.eq([(1.0, be[1:]), (-keep, be[:-1]), (-keep * lb.charge_efficiency * dt, bc),
           (keep * dt / lb.discharge_efficiency, bd)])
    reserve = lp.var((T, n), 0.0, np.inf, cost=weights.battery_reserve_kwh_h * dt)
    lp.le([(-1.0, reserve), (-1.0, be[1:])], -f64(b.reserve_soc) * cap)
    net_terms += [(1.0, bc), (-1.0, bd)]

    # --- EV ----------------------------------------------------------------------------------
    e = lay.ev
    conn = _stack(inputs, "ev_connected") > 0.5  # (T, N)
    share = np.where(conn, _stack(inputs, "ev_available"), 0.0)  # share of each step plugged in
    prev = np.vstack([state.ev_connected[None, :], conn[:-1]])
    hours = _stack(inputs, "ev_hours_to_departure")
    replaced = np.zeros_like(conn)  # back-to-back sessions: the hours to departure jump up (as the device sees)
    replaced[1:] = conn[1:] & conn[:-1] & (hours[1:] > hours[:-1] - dt + 1e-3)
    arrival = conn & (~prev | replaced)
    arr_kwh = _stack(inputs, "ev_arrival_soc") * _stack(inputs, "ev_capacity_kwh")
    tgt_kwh = np.maximum(_stack(inputs, "ev_target_soc"), _stack(inputs, "ev_arrival_soc")) * _stack(
        inputs, "ev_capacity_kwh")
    # carry session attributes forward from each arrival (sessions in progress keep the state's values)
    sess_cap, sess_tgt, sess_arr = np.zeros((T, n)), np.zeros((T, n)), np.zeros((T, n))
    cur_cap = np.where(state.ev_connected, fleet.ev.capacity_kwh.astype(float), 0.0)
    cur_tgt, cur_arr = state.ev_target_kwh.copy(), state.ev_kwh.copy()
    all_cap = _stack(inputs, "ev_capacity_kwh")
    for t in range(T):  # one pass over steps, vectorized over homes
        cur_cap = np.where(arrival[t], all_cap[t], cur_cap)
        cur_tgt = np.where(arrival[t], tgt_kwh[t], cur_tgt)
        cur_arr = np.where(arrival[t], arr_kwh[t], cur_arr)
        sess_cap[t], sess_tgt[t], sess_arr[t] = cur_cap, cur_tgt, cur_arr
    floor = f64(e.v2g_min_soc) * sess_cap
    v2g_ok = sess_arr >= floor
    eff = f64(e.efficiency)
    ec = lp.var((T, n), 0.0, np.where(conn, f64(e.max_charge_kw) * share, 0.0))
    ed = lp.var((T, n), 0.0, np.where(conn & v2g_ok, f64(e.max_discharge_kw) * share, 0.0))
    ee = lp.var((T + 1, n), -np.inf, np.inf)  # EV energy at the start of each step
    lp.eq([(1.0, ee[0][~arrival[0]])], np.where(state.ev_connected, state.ev_kwh, 0.0)[~arrival[0]])
    lp.eq([(1.0, ee[:-1][arrival])], arr_kwh[arrival])
    # dynamics while plugged in; energy within [floor (V2G sessions) or 0, capacity] at step ends. The end
    # of a step carries into the next step's start unless a new session takes the charger there.
    end = lp.var((T, n), -np.inf, np.inf)
    carry = conn & ~np.vstack([arrival[1:], np.zeros((1, n), bool)])
    lp.eq([(1.0, ee[1:][carry]), (-1.0, end[carry])])
    ones = np.ones((T, n))
    lp.eq([(1.0, end[conn]), (-1.0, ee[:-1][conn]), ((-eff * dt * ones)[conn], ec[conn]),
           ((dt / eff * ones)[conn], ed[conn])])
    lp.le([(1.0, end[conn])], sess_cap[conn])
    lower = np.where(v2g_ok, floor, 0.0)
    lp.le([(-1.0, end[conn])], -np.minimum(lower, sess_arr)[conn] + 1e-6)
    # unmet energy when the EV leaves during the horizon (departure seen at the next step's start)
    after = np.ones(n, bool) if ev_connected_after is None else np.asarray(ev_connected_after, bool)
    leaves = conn & ~np.vstack([conn[1:] & ~replaced[1:], after[None, :]])  # last step of a session that ends
    unmet = lp.var((T, n), 0.0, np.where(leaves, np.inf, 0.0), cost=weights.ev_unmet_kwh)
    lp.le([(-1.0, unmet[leaves]), (-1.0, end[leaves])], -sess_tgt[leaves])
    net_terms += [(1.0, ec), (-1.0, ed)]

    # --- PV ----------------------------------------------------------------------------------
    pv = lp.var((T, n), 0.0, _stack(inputs, "pv_available_kw"))
    net_terms.append((-1.0, pv))

    # --- thermostat --------------------------------------------------------------------------
    th = fleet.thermostat
    tp = lay.thermostat
    owned_th = th.owned
    t_out = grid[:, G["outdoor_temp_c"]]
    heating = t_out[:, None] < f64(tp.balance_temp_c)[None, :]
    cop = np.where(heating, np.array([cop_heating(x) for x in t_out])[:, None],
                   -np.array([cop_cooling(x) for x in t_out])[:, None])
    a = f64(th.decay)
    g_th = (1 - a) * f64(tp.resistance_c_per_kw)
    gains = f64(tp.internal_gain_kw)[None, :] + f64(tp.solar_aperture_m2)[None, :] * grid[:, G["ghi_w_m2"]][:, None] / 1000
    free_part = g_th[None, :] * gains + (1 - a)[None, :] * t_out[:, None]
    hp = lp.var((T, n), 0.0, np.where(owned_th, f64(tp.heat_pump_kw), 0.0)[None, :] * np.ones((T, 1)))
    tt = lp.var((T + 1, n), -np.inf, np.inf)
    lp.eq([(1.0, tt[0])], state.indoor_c)
    lp.eq([(1.0, tt[1:]), (-a[None, :] * np.ones((T, 1)), tt[:-1]), (-(g_th[None, :] * cop), hp)], free_part)
    w_th = weights.thermal_discomfort_degh * dt * owned_th
    th_lo = lp.var((T, n), 0.0, np.inf, cost=w_th)
    th_hi = lp.var((T, n), 0.0, np.inf, cost=w_th)
    lp.le([(-1.0, tt[1:]), (-1.0, th_lo)], -(f64(tp.comfort_low_c) + margins_c[0]))
    lp.le([(1.0, tt[1:]), (-1.0, th_hi)], f64(tp.comfort_high_c) - margins_c[0])
    net_terms.append((1.0, hp))

    # --- water heater ------------------------------------------------------------------------
    wh = fleet.water_heater
    wp_ = lay.water_heater
    frac = np.minimum(_stack(inputs, "dhw_draw_l") / f64(wp_.volume_l)[None, :], 1.0)
    lam = f64(wh._loss_factor)
    g_wh = f64(wh.gain_c_per_kw)
    wp = lp.var((T, n), 0.0, np.where(wh.owned, f64(wp_.element_kw), 0.0)[None, :] * np.ones((T, 1)))
    wt = lp.var((T + 1, n), -np.inf, np.vstack([np.full((1, n), np.inf), np.broadcast_to(f64(wp_.max_temp_c), (T, n))]))
    lp.eq([(1.0, wt[0])], state.tank_c)
    decay_wh = (1 - lam)[None, :] * (1 - frac)
    lp.eq([(1.0, wt[1:]), (-decay_wh, wt[:-1]), (-g_wh[None, :] * np.ones((T, 1)), wp)],
          (1 - lam)[None, :] * frac * f64(wp_.inlet_c)[None, :] + lam[None, :] * f64(wp_.ambient_c)[None, :])
    w_wh = weights.dhw_discomfort_degh * dt * wh.owned
    wh_lo = lp.var((T, n), 0.0, np.inf, cost=w_wh)
    wh_hi = lp.var((T, n), 0.0, np.inf, cost=w_wh)
    lp.le([(-1.0, wt[1:]), (-1.0, wh_lo)], -(f64(wp_.comfort_low_c) + margins_c[1]))
    lp.le([(1.0, wt[1:]), (-1.0, wh_hi)], f64(wp_.comfort_high_c))
    net_terms.append((1.0, wp))

    # --- C&I flexible load -------------------------------------------------------------------
    fp_ = lay.flex_load
    flex_base = _stack(inputs, "flex_baseline_kw")
    fp = lp.var((T, n), flex_base * (1 - f64(fp_.max_curtail_fraction))[None, :], flex_base + f64(fp_.max_rebound_kw))
    bmax = f64(fp_.max_backlog_kwh)[None, :] * np.ones((T, 1))
    settle = (step_end_seconds % 86400 == 0)[:, None] * np.ones((1, n), bool)
    bstart = lp.var((T, n), -np.inf, np.inf)
    bend = lp.var((T, n), -bmax, bmax)
    lp.eq([(1.0, bstart[0])], state.flex_backlog_kwh)
    lp.eq([(1.0, bend), (-1.0, bstart), (dt, fp)], flex_base * dt)
    keep = ~settle[:-1]
    lp.eq([(1.0, bstart[1:][keep]), (-1.0, bend[:-1][keep])])
    lp.eq([(1.0, bstart[1:][~keep])], 0.0)
    unserved = lp.var((T, n), 0.0, np.where(settle, np.inf, 0.0), cost=weights.flex_unserved_kwh)
    lp.le([(-1.0, unserved[settle]), (1.0, bend[settle])], 0.0)
    net_terms.append((1.0, fp))

    # --- net power, site limits --------------------------------------------------------------
    imp = lp.var((T, n))
    exp = lp.var((T, n))
    lp.eq([(1.0, imp), (-1.0, exp)] + [(-c, idx) for c, idx in net_terms], base)
    site = lp.var((T, n), 0.0, np.inf, cost=weights.site_limit_kwh * dt)
    lp.le([(1.0, imp), (-1.0, site)], f64(lay.site_import_limit_kw))
    site_x = lp.var((T, n), 0.0, np.inf, cost=weights.site_limit_kwh * dt)
    lp.le([(1.0, exp), (-1.0, site_x)], f64(lay.site_export_limit_kw))

    # --- task objectives ---------------------------------------------------------------------
    net = [(1.0, imp), (-1.0, exp)]
    constant_cost = 0.0  # objective terms that no decision changes (kept so the objective is the return)
    gap_bound = 0.0
    for task in tasks:
        if isinstance(task, PriceArbitrage):
            s = task.price_scale
            lp.add_cost(imp, s * grid[:, G["price_import"]][:, None] * dt * np.ones((1, n)))
            lp.add_cost(exp, -s * grid[:, G["price_export"]][:, None] * dt * np.ones((1, n)))
        elif isinstance(task, PeakShaving):
            over = lp.var((T,), 0.0, np.inf, cost=task.penalty_per_kwh * dt)
            lp.le_sum(net + [(-1.0, over)], np.full(T, task.limit_kw))
        elif isinstance(task, DemandResponse):
            # credit = c dt sum_E (CBL_e - agg_e), CBL_e = const_e + w sum_W agg (the task's customer baseline)
            c = task.credit_per_kwh * dt
            gap_bound += task.plan_gap_bound(signals.start_step, T)
            for e, const, window, w in task.plan_terms(signals.start_step, T):
                constant_cost -= c * float(const.sum())
                lp.add_cost(imp[e], c * np.ones((len(e), n)))
                lp.add_cost(exp[e], -c * np.ones((len(e), n)))
                if len(window):
                    lp.add_cost(imp[window], -c * w * len(e) * np.ones((len(window), n)))
                    lp.add_cost(exp[window], c * w * len(e) * np.ones((len(window), n)))
                short = lp.var((len(e),), 0.0, np.inf, cost=task.shortfall_penalty_per_kwh * dt)
                # shortfall_e >= commit - (CBL_e - agg_e)  <=>  agg_e - w sum_W agg - shortfall_e <= const_e - commit
                terms = [(1.0, imp[e]), (-1.0, exp[e]), (-1.0, short)]
                if len(window):
                    terms += [(-w, np.broadcast_to(imp[window], (len(e),) + imp[window].shape)),
                              (w, np.broadcast_to(exp[window], (len(e),) + exp[window].shape))]
                lp.le_sum(terms, const - task.commit_kw)
        elif isinstance(task, MarketBid):
            # reward = p R dt - (1 + m) p s dt, s >= R - (forecast - agg), s >= 0 (exact: concave in the load)
            e, forecast, commit, price = task.commit_terms(signals.start_step, T)
            if len(e):
                constant_cost -= float((price * commit).sum()) * dt
                short = lp.var((len(e),), 0.0, np.inf, cost=(1.0 + task.shortfall_multiplier) * price * dt)
                lp.le_sum([(1.0, imp[e]), (-1.0, exp[e]), (-1.0, short)], forecast - commit)
        elif isinstance(task, FrequencyRegulation):
            # agg_t - point_t - err_up_t + err_dn_t = signal_t * capacity; the hour's declared point is an affine
            # function of the planned load (the previous hour's mean metered load)
            credit = task.capacity_price_per_kwh * task.capacity_kw_per_home * n * dt * T  # capacity credit
            constant_cost -= credit
            if task.capacity_paid_by_score:  # paid x the hour's score in [0, 1]: planned at 1, off by at most it
                gap_bound += credit
            const, windows, w = task.declared_terms(signals.start_step, T)
            err_up = lp.var((T,), 0.0, np.inf, cost=task.penalty_per_kwh * dt)
            err_dn = lp.var((T,), 0.0, np.inf, cost=task.penalty_per_kwh * dt)
            rhs = const + signals.reg_signal * task.capacity_kw
            k = 0
            while k < T:  # steps of one hour share their window
                end = k + 1
                while end < T and np.array_equal(windows[end], windows[k]):
                    end += 1
                rows, win = np.arange(k, end), windows[k]
                terms = [(1.0, imp[rows]), (-1.0, exp[rows]), (-1.0, err_up[rows]), (1.0, err_dn[rows])]
                if len(win):
                    shape = (len(rows),) + imp[win].shape
                    terms += [(-w, np.broadcast_to(imp[win], shape)), (w, np.broadcast_to(exp[win], shape))]
                lp.eq_sum(terms, rhs[rows])
                k = end

    offset = constant_cost
    if terminal is not None:  # value of the change in stored energy, as envs.terminal computes it
        price, stored0 = terminal
        offset += price * float(np.sum(stored0))
        lp.add_cost(be[T], -price * f64(b.discharge_efficiency))
        lp.add_cost(wt[T], -price * wh.owned * f64(wh.heat_capacity_kwh_per_c))
        # building heat signed by each step's mode: sum_t sign_t (T_{t+1} - T_t), so T_k carries
        # sign_{k-1} - sign_k (T_0 is the fixed start: in the offset) and T_T carries sign_{T-1}
        sign = np.where(heating, 1.0, -1.0)
        coef = np.vstack([sign[:-1] - sign[1:], sign[-1:]])
        lp.add_cost(tt[1:], -price * owned_th * coef * f64(tp.capacitance_kwh_per_c) / COP_REF)
        still = conn[-1] & after
        need = lp.var((n,), 0.0, np.where(still, np.inf, 0.0), cost=price / eff)
        lp.le([(-1.0, need[still]), (-1.0, ee[T][still])], -sess_tgt[-1][still])

    result = lp.minimize(time_limit_s)
    x = result.x
    sp = np.zeros((T, NUM_DEVICE_CLASSES, n))
    sp[:, BATTERY] = x[bc] - x[bd]
    sp[:, EV] = x[ec] - x[ed]
    sp[:, PV] = -x[pv]
    sp[:, WATER_HEATER] = x[wp]
    sp[:, THERMOSTAT] = x[hp]
    sp[:, FLEX] = x[fp]
    return Plan(sp, result.objective + offset, result.solve_s, lp.n, gap_bound)

