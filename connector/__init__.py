"""Kafka to Adobe Experience Platform streaming ingestion connector."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("aep-connector")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
