"""Figures measured by integration tests, printed in pytest's terminal summary (so a CI log
shows, e.g., the worker's throughput) — never asserted on."""

from __future__ import annotations

MEASUREMENTS: list[tuple[str, str]] = []


def measurement(name: str, value: str) -> None:
    MEASUREMENTS.append((name, value))
