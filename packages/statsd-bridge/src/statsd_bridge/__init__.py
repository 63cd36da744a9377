"""statsd-bridge: poll HTTP monitoring APIs on a schedule and push the numbers to StatsD."""

__version__ = "0.1.0"

__all__ = ["__version__"]
