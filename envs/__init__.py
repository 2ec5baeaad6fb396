"""Vectorized DER fleet environments (pure numpy: importing this imports neither torch nor ray)."""
