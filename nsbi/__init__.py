"""nsbi: neural simulation-based inference workflow."""

__version__ = "0.1.0"
