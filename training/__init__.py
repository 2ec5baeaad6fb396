"""Entry points: simulate now; train / evaluate / export (Hydra apps) as they land."""
