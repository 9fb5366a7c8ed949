"""Instructions per record of the worker's main thread and of the floor, counted by valgrind.

    .venv/bin/python bench/instructions_bench.py [--variants full,no-validate,bare] \\
        [--records 1000,3000] [--jobs 2]

CPU time per record moves by a third between runs of the same code on a shared virtual machine
(the host's other load slows the cores down), so a change of a few per cent cannot be seen in
it. Instructions do not move with the host: valgrind's callgrind counts those each thread
executes. This runs bench/hotpath_bench.py's rounds (the real worker loop over in-memory
messages, its variants, and the floor's loop) under callgrind, each at two record counts, and
prints the main thread's instructions per record (the difference between the two counts, less
the cost of building the messages, measured the same way) and their ratio to the floor's.

What it does not see: how fast the instructions run (cache misses, branches, and a core shared
with the emulator and the broker in the end-to-end run): bench/worker_bench.py measures time.
Timing-dependent parts of the loop (linger, turns) run 50x slower under valgrind, so the figures
move by about 1 % between runs. Needs valgrind; a round of 3,000 records takes about a minute.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

DISTINCT = 800  # distinct records, repeated with fresh offsets (building them costs little)


def child(variant: str, records: int) -> None:
    """One round of `variant` over `records` messages (run under valgrind by the parent)."""
    from confluent_kafka import Message

    from bench import hotpath_bench

    base = hotpath_bench.build_messages(DISTINCT, 1000)
    offsets = [0] * hotpath_bench.PARTITIONS
    messages = []
    for index in range(records):
        model = base[index % DISTINCT]
        partition = model.partition()
        assert partition is not None
        messages.append(
            Message(
                topic=model.topic(),
                partition=partition,
                offset=offsets[partition],
                key=model.key(),
                value=model.value(),
                timestamp=model.timestamp(),
            )
        )
        offsets[partition] += 1
    if variant == "floor":
        hotpath_bench.floor_round(messages)
    elif variant != "build":
        with tempfile.TemporaryDirectory(prefix="instructions-") as work:
            hotpath_bench.worker_round(messages, Path(work), variant)


def main_thread_instructions(variant: str, records: int) -> int:
    """Instructions the main thread executed in a child process of `variant`."""
    with tempfile.TemporaryDirectory(prefix="callgrind-") as work:
        out = Path(work) / "cg.out"
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--separate-threads=yes",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--child",
                variant,
                str(records),
            ],
            check=True,
            capture_output=True,
            cwd=REPO_ROOT,
            # One hash seed for every child: dict and set layouts (and so the instructions of
            # their look-ups) otherwise differ from run to run, by a few per cent.
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        main = Path(f"{out}-01")  # thread 1: the main thread
        for line in main.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("summary:"):
                return int(line.split()[1])
    raise SystemExit(f"no summary in callgrind's output for {variant}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="full,no-validate,bare")
    parser.add_argument("--records", default="1000,3000", help="Two record counts.")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "RECORDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    low, high = (int(n) for n in args.records.split(","))
    variants = ["build", "floor", *args.variants.split(",")]
    runs = [(variant, n) for variant in variants for n in (low, high)]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        counts = dict(
            zip(runs, pool.map(lambda run: main_thread_instructions(*run), runs), strict=True)
        )
    per_record = {
        variant: (counts[(variant, high)] - counts[(variant, low)]) / (high - low)
        for variant in variants
    }
    build = per_record.pop("build")
    floor = per_record["floor"] - build
    print(f"main-thread instructions per record ({low:,} and {high:,} records; ratio to floor):")
    for variant, value in per_record.items():
        own = value - build
        print(f"  {variant:13s} {own:10,.0f}  ({own / floor:.2f})")


if __name__ == "__main__":
    main()
