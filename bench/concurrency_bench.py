"""Adaptive concurrency against fixed settings: the end-to-end benchmark (worker_bench.py) run
with each fixed number of requests in flight per connection and with the adaptive limit.

    .venv/bin/python bench/concurrency_bench.py --output bench-concurrency.json
    .venv/bin/python bench/concurrency_bench.py --records 100000 --latency-ms 40 \\
        --fixed 1,2,4,8 --cap 8 --repeat 3 --output bench-concurrency.json [--env NAME=VALUE ...]

One broker, one topic and one emulator serve every run (see worker_bench.py for what a run
is and measures). The emulator answers after `--latency-ms` (a healthy API some way off; 0 is
loopback speed). Variants run interleaved, `fixed-1, …, adaptive, fixed-1, …`, so that load
from elsewhere on the machine falls on all of them alike. Per variant: the median records/s
over the whole run, and over the run after `--warmup-s` (from the worker's commit log lines:
the rate once every variant has started up, which is what a long-running worker sees); for the
adaptive runs also the limit over the run, read from the worker's DEBUG log ("concurrency
limit" lines): time-weighted mean, last, and how long it took to reach the cap. The verdict
compares the adaptive median with the best fixed median, both ways.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import worker_bench as wb

LIMIT_LOG = "concurrency limit"


@dataclass
class RunLog:
    """What a run's worker log says: when it got its partitions (where worker_bench's measured
    run begins), each change of the adaptive limit, and the records committed over time."""

    assigned: float | None = None
    limits: list[tuple[float, int]] = field(default_factory=list)
    committed: list[tuple[float, int]] = field(default_factory=list)  # (time, records)


def read_log(log_path: Path, topic: str) -> RunLog:
    run = RunLog()
    positions: dict[str, int] = {}
    for line in log_path.read_bytes().splitlines():
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(entry, dict):
            continue
        message = entry.get("msg")
        if message == LIMIT_LOG:
            run.limits.append((wb.parse_ts(entry["ts"]), int(entry["limit"])))
        elif message == "partitions assigned" and run.assigned is None:
            run.assigned = wb.parse_ts(entry["ts"])
        elif message == "committed":
            for name, offset in entry.get("offsets", {}).items():
                if name.rpartition("/")[0] == topic:
                    positions[name] = offset
            run.committed.append((wb.parse_ts(entry["ts"]), sum(positions.values())))
    return run


def steady_rate(run: RunLog, warmup_s: float, records: int) -> float | None:
    """Records/s from the last commit at least `warmup_s` after the assignment to the commit that
    completed the topic: the rate once every variant has started up (the adaptive limit has
    climbed). None when the run was too short to have such a window."""
    if run.assigned is None:
        return None
    done = next((t for t, n in run.committed if n >= records), None)
    start = [(t, n) for t, n in run.committed if t <= run.assigned + warmup_s]
    if done is None or not start or done <= start[-1][0]:
        return None
    started_at, committed = start[-1]
    return (records - committed) / (done - started_at)


def weighted_mean(points: list[tuple[float, int]], end: float) -> float | None:
    """The limit averaged over time, from its first value to `end`."""
    if not points:
        return None
    area = 0.0
    for (start, value), (stop, _) in zip(points, [*points[1:], (end, 0)], strict=True):
        area += value * max(0.0, min(stop, end) - start)
    span = end - points[0][0]
    return area / span if span > 0 else float(points[-1][1])


def variants(args: argparse.Namespace) -> list[tuple[str, dict[str, str]]]:
    prefix = "AEP_CONNECTOR_BATCHING__"
    chosen = [
        (f"fixed-{n}", {f"{prefix}MAX_IN_FLIGHT_REQUESTS": str(n)})
        for n in sorted({int(v) for v in args.fixed.split(",")})
    ]
    chosen.append(
        (
            "adaptive",
            {
                f"{prefix}MAX_IN_FLIGHT_REQUESTS": str(args.cap),
                f"{prefix}ADAPTIVE_CONCURRENCY": "true",
            },
        )
    )
    return [(name, args.settings | settings) for name, settings in chosen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="Records to produce.")
    parser.add_argument("--record-size", type=int, default=1000, help="Bytes of one record.")
    parser.add_argument("--partitions", type=int, default=8, help="Partitions of the topic.")
    parser.add_argument("--latency-ms", type=int, default=40, help="The emulator's latency.")
    parser.add_argument("--fixed", default="1,2,4,8", help="Fixed requests in flight to try.")
    parser.add_argument("--cap", type=int, default=8, help="The adaptive limit's maximum.")
    parser.add_argument("--repeat", type=int, default=2, help="Runs of each variant.")
    parser.add_argument("--output", type=Path, required=True, help="JSON file for the figures.")
    parser.add_argument("--timeout", type=float, default=600, help="Bound on one run, seconds.")
    parser.add_argument("--keep", action="store_true", help="Keep the worker logs.")
    parser.add_argument(
        "--warmup-s",
        type=float,
        default=10.0,
        help="The steady rate is measured from this long after the assignment.",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="AEP_CONNECTOR_NAME=VALUE",
        help="A setting for every variant (repeatable).",
    )
    args = parser.parse_args()
    args.settings = {}
    for assignment in args.env:
        name, sep, value = assignment.partition("=")
        if not sep or not name.startswith("AEP_CONNECTOR_"):
            parser.error(f"--env {assignment!r}: expected AEP_CONNECTOR_NAME=VALUE")
        args.settings[name] = value
    # The worker logs each change of the limit at DEBUG; worker_bench runs it at DEBUG.
    args.profile = False
    args.floor_figures = None  # worker_bench's floor comparison: not measured here
    args.scrape = None  # nor its metrics series
    args.bad_every = 0  # every record valid
    args.max_request_bytes = int(
        args.settings.get("AEP_CONNECTOR_BATCHING__MAX_REQUEST_BYTES", wb.DEFAULT_MAX_REQUEST_BYTES)
    )

    started = time.time()
    work_dir = Path(tempfile.mkdtemp(prefix="concurrency-bench-"))
    chosen = variants(args)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in chosen}
    try:
        with wb.broker(work_dir) as (bootstrap, broker_pid):
            topic = wb.create_topic(bootstrap, wb.unique_name("bench-arc"), args.partitions)
            dlq = wb.create_topic(bootstrap, wb.unique_name("bench-dlq"), 1)
            wb.produce_records(bootstrap, topic, args.records, args.record_size, args.partitions)
            ends = {p: args.records // args.partitions for p in range(args.partitions)}
            for p in range(args.records % args.partitions):
                ends[p] += 1
            mappings_dir = work_dir / "mappings"
            wb.mapping_copy(mappings_dir, topic)
            emulator_config = {
                "ims_org_id": wb.IMS_ORG,
                "max_stored_messages": 1000,
                "faults": {"latency_ms": args.latency_ms},
            }
            with wb.start_emulator(emulator_config, work_dir) as emulator:
                services = wb.Services(
                    bootstrap, broker_pid, emulator, topic, dlq, mappings_dir, ends, work_dir
                )
                number = 0
                for _ in range(args.repeat):
                    for name, settings in chosen:
                        number += 1
                        run_args = argparse.Namespace(**vars(args))
                        run_args.settings = settings
                        figures = wb.run_once(services, number, run_args)
                        figures["variant"] = name
                        run = read_log(work_dir / f"worker-run{number}.log", topic)
                        steady = steady_rate(run, args.warmup_s, args.records)
                        figures["steady_records_per_s"] = round(steady) if steady else None
                        if name == "adaptive":
                            points = run.limits
                            end = (run.assigned or 0.0) + figures["elapsed_s"]
                            mean = weighted_mean(points, end)
                            at_cap = next((t for t, v in points if v >= args.cap), None)
                            figures["limit"] = {
                                "changes": len(points),
                                "time_weighted_mean": round(mean, 2) if mean else None,
                                "last": points[-1][1] if points else None,
                                "cap_reached_after_s": round(at_cap - points[0][0], 2)
                                if at_cap is not None
                                else None,
                            }
                        runs[name].append(figures)
                        print(
                            f"{name}: {figures['records_per_s']:,} records/s "
                            f"(after {args.warmup_s:g} s: {figures['steady_records_per_s']}), "
                            f"{figures['requests']} requests, "
                            f"{figures['mean_request_latency_ms']} ms mean latency, "
                            f"worker {figures['machine']['worker_cores']} cores"
                            + (f", limit {figures['limit']}" if "limit" in figures else "")
                            + (f"  PROBLEM: {figures['problem']}" if "problem" in figures else ""),
                            flush=True,
                        )
    finally:
        if args.keep:
            print(f"worker logs kept in {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)

    medians = {name: median(r["records_per_s"] for r in rs) for name, rs in runs.items()}
    fixed = {name: value for name, value in medians.items() if name.startswith("fixed-")}
    best = max(fixed, key=lambda name: fixed[name])
    ratio = medians["adaptive"] / fixed[best]
    # Round by round (each round runs every variant once, back to back): adaptive over the best
    # fixed setting's run of the same round. Load that drifts between rounds cancels out.
    paired = [
        a["records_per_s"] / f["records_per_s"]
        for a, f in zip(runs["adaptive"], runs[best], strict=True)
    ]
    # Where adaptive placed in each round (1: the fastest of all variants): when every setting
    # is bound by the machine's CPU rather than by round trips, the variants differ by load
    # alone, and the places spread evenly around the middle.
    places = [
        1 + sum(runs[n][i]["records_per_s"] > a["records_per_s"] for n in fixed)
        for i, a in enumerate(runs["adaptive"])
    ]
    # Runs too short for a window after the warm-up have no steady rate: left out.
    steady = {
        name: median(rates) if rates else 0
        for name, rs in runs.items()
        for rates in [[r["steady_records_per_s"] for r in rs if r["steady_records_per_s"]]]
    }
    steady_best = max((n for n in steady if n.startswith("fixed-")), key=lambda n: steady[n])
    steady_ratio = steady["adaptive"] / steady[steady_best] if steady[steady_best] else None
    result = {
        "command": " ".join([".venv/bin/python", "bench/concurrency_bench.py", *sys.argv[1:]]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "git_commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=wb.REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip(),
        "settings": {
            "records": args.records,
            "record_size": args.record_size,
            "partitions": args.partitions,
            "latency_ms": args.latency_ms,
            "cap": args.cap,
            "worker_env": args.settings,
        },
        "machine": {"cpus": os.cpu_count(), "loadavg_at_end": list(os.getloadavg())},
        "median_records_per_s": medians,
        "best_fixed": best,
        "adaptive_over_best_fixed": round(ratio, 3),
        "adaptive_over_best_fixed_by_round": [round(p, 3) for p in paired],
        "adaptive_place_by_round": places,
        "steady_median_records_per_s": steady,
        "steady_best_fixed": steady_best,
        "steady_adaptive_over_best_fixed": round(steady_ratio, 3) if steady_ratio else None,
        "runs": runs,
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("median_records_per_s", "best_fixed")}, indent=2))
    print(f"adaptive / best fixed ({best}): {ratio:.3f}")
    print(
        f"adaptive / {best} of the same round, each round: "
        + ", ".join(f"{p:.3f}" for p in paired)
        + f" (median {median(paired):.3f})"
    )
    print(f"adaptive's place among {len(fixed) + 1} variants, each round: {places}")
    if steady_ratio:
        print(
            f"after {args.warmup_s:g} s: {steady}; adaptive / best fixed ({steady_best}): "
            f"{steady_ratio:.3f}"
        )
    print(f"figures written to {args.output}")


if __name__ == "__main__":
    main()
