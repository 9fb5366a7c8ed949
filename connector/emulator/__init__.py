"""A local emulator of Adobe Experience Platform's streaming ingestion API.

It serves the connector's tests, its benchmark and the quick start; docs/emulator.md describes
its configuration, the control API and its measured speed.
"""

from connector.emulator.app import create_app, serve
from connector.emulator.config import EmulatorConfig, EmulatorConfigError, load_config

__all__ = ["EmulatorConfig", "EmulatorConfigError", "create_app", "load_config", "serve"]
