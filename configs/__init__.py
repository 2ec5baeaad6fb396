"""Hydra configuration files (installed as package data; schemas live next to their apps)."""
