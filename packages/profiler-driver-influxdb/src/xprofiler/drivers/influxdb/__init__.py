"""InfluxDB 1.x storage driver for xprofiler: ``influxdb://host:8086/database``."""

from .driver import InfluxDBDriver, Options, parse_options

__all__ = ["InfluxDBDriver", "Options", "parse_options"]
