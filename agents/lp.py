"""A small builder for large sparse linear programs, vectorized over variable blocks.

Variables come in named blocks (numpy index arrays of any shape); constraints are added as a sum
of ``coefficient * variable-block`` terms broadcast to a common shape, one row per element. No
Python loop runs per home or per step. Solved with HiGHS through ``scipy.optimize.linprog``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

Term = tuple[np.ndarray | float, np.ndarray]  # (coefficient, variable indices), broadcastable


@dataclass
class _Rows:
    rows: list = field(default_factory=list)
    cols: list = field(default_factory=list)
    vals: list = field(default_factory=list)
    rhs: list = field(default_factory=list)
    count: int = 0

    def add(self, terms: list[Term], rhs: np.ndarray | float) -> None:
        shape = np.broadcast_shapes(*(np.shape(idx) for _, idx in terms), *(np.shape(c) for c, _ in terms),
                                    np.shape(rhs))
        n = int(np.prod(shape))
        if n == 0:
            return
        row = self.count + np.arange(n)
        for coef, idx in terms:
            self.rows.append(row)
            self.cols.append(np.broadcast_to(idx, shape).ravel())
            self.vals.append(np.broadcast_to(np.asarray(coef, dtype=np.float64), shape).ravel())
        self.rhs.append(np.broadcast_to(np.asarray(rhs, dtype=np.float64), shape).ravel())
        self.count += n

    def add_summed(self, terms: list[Term], rhs: np.ndarray) -> None:
        """One row per entry of axis 0 of every term; the other axes are summed into that row."""
        rhs = np.asarray(rhs, dtype=np.float64).ravel()
        rows = len(rhs)
        if rows == 0:
            return
        for coef, idx in terms:
            idx = np.asarray(idx)
            if idx.shape[0] != rows:
                raise ValueError(f"summed term has {idx.shape[0]} rows, expected {rows}")
            row = self.count + np.broadcast_to(np.arange(rows).reshape((rows,) + (1,) * (idx.ndim - 1)), idx.shape)
            self.rows.append(row.ravel())
            self.cols.append(idx.ravel())
            self.vals.append(np.broadcast_to(np.asarray(coef, dtype=np.float64), idx.shape).ravel())
        self.rhs.append(rhs)
        self.count += rows

    def matrix(self, n_vars: int) -> tuple[sp.csr_matrix | None, np.ndarray | None]:
        if self.count == 0:
            return None, None
        a = sp.csr_matrix((np.concatenate(self.vals), (np.concatenate(self.rows), np.concatenate(self.cols))),
                          shape=(self.count, n_vars))
        return a, np.concatenate(self.rhs)


@dataclass
class LpResult:
    x: np.ndarray
    objective: float
    status: str
    solve_s: float


class LinearProgram:
    """``var`` blocks, ``eq``/``le`` constraints, ``minimize``."""

    def __init__(self) -> None:
        self.n = 0
        self._lb: list[np.ndarray] = []
        self._ub: list[np.ndarray] = []
        self._cost: list[np.ndarray] = []
        self._eq = _Rows()
        self._le = _Rows()

    def var(self, shape: tuple[int, ...], lb=0.0, ub=np.inf, cost=0.0) -> np.ndarray:
        """A block of variables; bounds and costs broadcast to ``shape``. Returns their indices."""
        size = int(np.prod(shape))
        idx = np.arange(self.n, self.n + size).reshape(shape)
        self.n += size
        self._lb.append(np.broadcast_to(np.asarray(lb, dtype=np.float64), shape).ravel())
        self._ub.append(np.broadcast_to(np.asarray(ub, dtype=np.float64), shape).ravel())
        self._cost.append(np.broadcast_to(np.asarray(cost, dtype=np.float64), shape).ravel())
        return idx

    def eq(self, terms: list[Term], rhs: np.ndarray | float = 0.0) -> None:
        """sum(coef * x[idx]) == rhs, elementwise."""
        self._eq.add(terms, rhs)

    def le(self, terms: list[Term], rhs: np.ndarray | float = 0.0) -> None:
        """sum(coef * x[idx]) <= rhs, elementwise."""
        self._le.add(terms, rhs)

    def eq_sum(self, terms: list[Term], rhs: np.ndarray) -> None:
        """For each row r: sum over all but the first axis of coef * x[idx[r, ...]] == rhs[r]."""
        self._eq.add_summed(terms, rhs)

    def le_sum(self, terms: list[Term], rhs: np.ndarray) -> None:
        """For each row r: sum over all but the first axis of coef * x[idx[r, ...]] <= rhs[r]."""
        self._le.add_summed(terms, rhs)

    def add_cost(self, idx: np.ndarray, cost: np.ndarray | float) -> None:
        """Add ``cost`` to the objective coefficient of variables ``idx``."""
        c = np.concatenate(self._cost)
        np.add.at(c, np.asarray(idx).ravel(), np.broadcast_to(np.asarray(cost, dtype=np.float64), np.shape(idx)).ravel())
        self._cost = [c]

    def minimize(self, time_limit_s: float = 600.0) -> LpResult:
        import time

        c = np.concatenate(self._cost)
        bounds = np.stack([np.concatenate(self._lb), np.concatenate(self._ub)], axis=1)  # +-inf: unbounded
        a_eq, b_eq = self._eq.matrix(self.n)
        a_ub, b_ub = self._le.matrix(self.n)
        t0 = time.perf_counter()
        res = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs",
                      options={"time_limit": time_limit_s, "presolve": True})
        elapsed = time.perf_counter() - t0
        if res.x is None:
            raise RuntimeError(f"LP not solved: {res.message}")
        return LpResult(res.x, float(res.fun), res.message, elapsed)
