"""Policies: RLlib multi-agent PPO, SB3 baselines, rule-based baselines, LP oracle (coming next)."""
