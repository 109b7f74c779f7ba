"""Plotting helpers (matplotlib + mplhep)."""
