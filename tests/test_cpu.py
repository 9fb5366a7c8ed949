"""Keeping the worker's threads on one CPU: the thread that pins and those it starts later."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from connector.cpu import current_cpu

linux_affinity = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs CPU affinity and two CPUs",
)

# In a fresh process (pinning is for good): pin, start a thread, print both threads' CPU sets.
PROBE = """
import json, os, threading
from connector.cpu import pin_to_one_cpu
before = sorted(os.sched_getaffinity(0))
cpu = pin_to_one_cpu()
seen = {}
def look():
    seen["thread"] = sorted(os.sched_getaffinity(threading.get_native_id()))
thread = threading.Thread(target=look)
thread.start()
thread.join()
print(json.dumps([before, cpu, sorted(os.sched_getaffinity(0)), seen["thread"]]))
"""


@linux_affinity
def test_the_pinning_thread_and_those_it_starts_run_on_one_allowed_cpu() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    before, cpu, main, thread = json.loads(done.stdout)
    assert len(before) >= 2
    assert cpu in before
    assert main == [cpu]
    assert thread == [cpu]


@linux_affinity
def test_current_cpu_is_one_this_thread_may_run_on() -> None:
    assert current_cpu() in os.sched_getaffinity(0)
