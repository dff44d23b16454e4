"""guild: a plugin-based experiment runner compatible with Guild AI 0.9 runs."""

__version__ = "0.1.0"
