"""Keeping the worker's threads on one CPU (setting `ops.single_cpu`).

Python runs one thread at a time, so the worker uses about one core whatever it does; but its
threads (the main loop, requests, librdkafka's) hand work to each other hundreds of times a
second, and when the kernel wakes each on another core every hand-off crosses cores: the
waking core's caches are cold and, in a virtual machine, the wake-up itself is an
inter-processor interrupt. Kept on one core of its own (the emulator and the broker on the
other), the end-to-end benchmark's worker spent 12–20 % less CPU per record and moved 17–26 %
more records a second; with them free to share its core, nothing (docs/performance.md).

Off by default: a worker pinned to a CPU cannot be moved off it, so on a node shared with
other busy processes two pinned workers may land on one core. Turn it on where the worker has
CPUs to itself (a Guaranteed pod with the static CPU manager, a dedicated machine).
"""

from __future__ import annotations

import os
from pathlib import Path


def current_cpu() -> int | None:
    """The CPU this thread runs on now (field 39 of /proc/thread-self/stat), None if unknown."""
    try:
        stat = Path("/proc/thread-self/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[36])
    except (OSError, IndexError, ValueError):
        return None


def pin_to_one_cpu() -> int | None:
    """Restrict this thread, and every thread it starts from now on, to one CPU of those it
    may use: the one it runs on (the kernel's own choice), else the lowest. Call before any
    other thread starts. Returns the CPU, or None where CPU affinity is not supported."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = os.sched_getaffinity(0)
    cpu = current_cpu()
    if cpu not in allowed:
        cpu = min(allowed)
    os.sched_setaffinity(0, {cpu})
    return cpu
