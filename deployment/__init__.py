"""Safety shield, command encoders, policy export and the dispatch loop (coming next)."""
