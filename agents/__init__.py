"""Policies: the policy API, rule-based baselines, the LP oracle and MPC (HiGHS).

Learned policies (RLlib, SB3) are served from ``vpprl.training``."""
