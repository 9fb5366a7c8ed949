"""The allocator setting: it takes effect on glibc and leaves an operator's own value alone."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from connector.allocator import ENV_OVERRIDE, fix_mmap_threshold

# Joins ~1 MB request bodies the way the sender does and prints the minor page faults of the
# last 20: with glibc's dynamic threshold the heap serves them after the first (no faults);
# with the threshold fixed each gets a fresh mapping (~250 faults).
PROBE = """
import os, resource, sys
from connector.allocator import fix_mmap_threshold
if sys.argv[1] == "fix":
    assert fix_mmap_threshold(), "mallopt refused"
parts = [os.urandom(1500) for _ in range(620)]
for _ in range(5):
    body = b",".join(parts); del body
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    body = b",".join(parts); del body
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt"
)


def faults_per_body(mode: str) -> float:
    env = {"PATH": "/usr/bin:/bin"}  # without MALLOC_MMAP_THRESHOLD_, whatever the test runs in
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return float(done.stdout)


@glibc_only
def test_fixed_threshold_gives_megabyte_buffers_their_own_mappings() -> None:
    assert faults_per_body("fix") > 200
    assert faults_per_body("leave") < 20


def test_an_operators_own_threshold_stands() -> None:
    assert fix_mmap_threshold({ENV_OVERRIDE: "262144"}) is False


# Keeps ~2,000 short-lived tracked objects coming and going, as records in flight do, and
# prints how many passes the collector made over its youngest generation.
COLLECTOR_PROBE = """
import gc, sys
from connector.allocator import YOUNG_GENERATION_THRESHOLD, settle_collector
if sys.argv[1] == "settle":
    settle_collector()
    assert gc.get_threshold()[0] == YOUNG_GENERATION_THRESHOLD
    assert gc.get_freeze_count() > 0
passes = []
gc.callbacks.append(lambda phase, info: phase == "start" and passes.append(info["generation"]))
for _ in range(50):
    live = [{"n": i} for i in range(2000)]
    del live
print(len(passes))
"""


def collector_passes(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", COLLECTOR_PROBE, mode], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_settled_collector_leaves_objects_that_come_and_go_alone() -> None:
    assert collector_passes("leave") > 50
    assert collector_passes("settle") == 0
