"""Draw the Grafana dashboard's main panels from a benchmark run, into docs/dashboard.png.

The picture shows users what the chart's dashboard shows before they install it. It is drawn
from the dashboard itself: each panel's PromQL (helm/aep-connector/dashboards/aep-connector.json)
is evaluated on the worker's /metrics as bench/worker_bench.py --scrape read them once a second
(tests/support/promql.py evaluates), with Grafana's units, legends and stacking. docs/dashboard.png
was made with

    .venv/bin/python bench/worker_bench.py --records 150000 --partitions 8 --bad-every 500 \\
        --emulator-config '{"faults": {"seed": 14, "p503": 0.06, "p429": 0.04,
                            "retry_after_s": 1, "retry_after_429_s": 1}}' \\
        --env AEP_CONNECTOR_BATCHING__MAX_BUFFERED_RECORDS=4000 --timeout 1500 \\
        --output bench-result.json --scrape bench-series.json
    .venv/bin/python bench/dashboard_png.py bench-series.json docs/dashboard.png

that is: the real broker (scripts/local-kafka), the emulator answering 6 % of the requests with
503 and 4 % with 429 (Retry-After 1 s), one record in 500 not JSON (dead-lettered at decoding),
and the worker process with default settings but a buffer of 4,000 messages (instead of 50,000),
so that requests held by a Retry-After pause partitions, as a slow API would.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: render to a file
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # the evaluator lives in tests/support

from tests.support import promql  # noqa: E402

DASHBOARD = REPO_ROOT / "helm" / "aep-connector" / "dashboards" / "aep-connector.json"
#: The panels drawn, in reading order (3 by 3).
PANELS = (
    "Records per second",
    "Acknowledgement latency",
    "Request fill",
    "In-flight requests and concurrency limit",
    "Retries by reason",
    "Requests by status",
    "Consumer lag per partition",
    "Partitions assigned and paused",
    "Dead letters by stage and class",
)
#: Grafana's $__rate_interval is four scrape intervals at least.
RATE_INTERVAL_SCRAPES = 5


def load_store(series: list[dict[str, Any]]) -> tuple[promql.Store, list[float]]:
    store = promql.Store()
    times = []
    for scrape in series:
        store.add(scrape["t"], scrape["samples"])
        times.append(scrape["t"])
    return store, times


def legend(template: str, labels: promql.Labels) -> str:
    values = dict(labels)
    text = re.sub(r"\{\{ *(\w+) *\}\}", lambda m: values.get(m.group(1), ""), template)
    return text or ", ".join(f"{k}={v}" for k, v in labels) or "value"


def formatter(unit: str) -> FuncFormatter:
    def short(value: float, _pos: int | None = None) -> str:
        for factor, suffix in ((1e6, "M"), (1e3, "k")):
            if abs(value) >= factor:
                return f"{value / factor:g}{suffix}"
        return f"{value:g}"

    def seconds(value: float, _pos: int | None = None) -> str:
        return f"{value * 1000:g} ms" if abs(value) < 1 else f"{value:g} s"

    def size(value: float, _pos: int | None = None) -> str:
        for factor, suffix in ((1 << 20, "MiB"), (1 << 10, "KiB")):
            if abs(value) >= factor:
                return f"{value / factor:g} {suffix}"
        return f"{value:g} B"

    return FuncFormatter(
        {
            "s": seconds,
            "percentunit": lambda v, _p=None: f"{v:.0%}",
            "bytes": size,
            "reqps": lambda v, _p=None: short(v) + "/s",
        }.get(unit, short)
    )


def draw_panel(
    ax: Axes, panel: dict[str, Any], store: promql.Store, times: list[float], vars_: dict[str, str]
) -> None:
    defaults = panel["fieldConfig"]["defaults"]
    stacked = defaults.get("custom", {}).get("stacking", {}).get("mode") == "normal"
    right_refs = {
        o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
        for o in panel["fieldConfig"]["overrides"]
        if o["matcher"]["id"] == "byFrameRefID"
    }
    twin: Axes | None = None
    lines: list[tuple[str, list[float], Axes]] = []
    for target in panel["targets"]:
        expr = promql.substitute(target["expr"], vars_)
        if promql.metric_names(expr) - store.names():
            continue  # a metric this worker does not export (another branch's, say)
        axis = ax
        if target["refId"] in right_refs:
            twin = twin or ax.twinx()
            axis = twin
            twin.yaxis.set_major_formatter(formatter(right_refs[target["refId"]]["unit"]))
        results = promql.evaluate_range(expr, store, times)
        for labels, values in sorted(results.items()):
            lines.append((legend(target["legendFormat"], labels), values, axis))
    start = times[0]
    xs = [t - start for t in times]
    if stacked and lines:
        names = [name for name, _, _ in lines]
        stacks = [[0.0 if math.isnan(v) else v for v in values] for _, values, _ in lines]
        ax.stackplot(xs, *stacks, labels=names, alpha=0.75)
    else:
        for name, values, axis in lines:
            axis.plot(xs, values, label=name, linewidth=1.3)
    ax.set_title(panel["title"], fontsize=10, loc="left", fontweight="bold")
    ax.yaxis.set_major_formatter(formatter(defaults["unit"]))
    ax.set_ylim(bottom=0)
    if "max" in defaults:
        ax.set_ylim(top=defaults["max"])
    if twin is not None:
        twin.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)
    ax.set_xlabel("seconds", fontsize=8)
    handles, names = ax.get_legend_handles_labels()
    if twin is not None:
        more_handles, more_names = twin.get_legend_handles_labels()
        handles += more_handles
        names += more_names
    if not handles:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return
    ncol = 1 if len(names) <= 4 else 2
    ax.legend(handles, names, fontsize=7, loc="best", ncol=ncol, framealpha=0.7)


def title(scraped: dict[str, Any], run: dict[str, Any]) -> str:
    settings = scraped["settings"]
    faults = settings.get("emulator_config", {}).get("faults", {})
    injected = ", ".join(
        f"{faults[key]:.0%} {code}"
        for key, code in (("p503", "503"), ("p429", "429"))
        if key in faults
    )
    changed = [
        name.removeprefix("AEP_CONNECTOR_").replace("__", ".").lower() + f"={value}"
        for name, value in settings.get("worker_env", {}).items()
    ]
    parts = [
        f"{settings['records']:,} records of ~{settings['mean_record_bytes']:,} B "
        f"over {settings['partitions']} partitions (real broker, emulator, worker process; "
        + (f"default settings but {', '.join(changed)})" if changed else "default settings)")
    ]
    if injected:
        parts.append(f"emulator answering {injected} (Retry-After 1 s)")
    if settings.get("bad_every"):
        parts.append(f"1 record in {settings['bad_every']} not JSON")
    figures = run.get("figures", {})
    if figures:
        machine = figures["machine"]
        parts.append(
            f"{figures['records_per_s']:,} records/s on {machine['cores']} cores shared with "
            f"other work (machine {machine['busy_cores']} cores busy, the worker "
            f"{machine['worker_cores']})"
        )
    return "aep-connector dashboard, drawn from a benchmark run: " + "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("series", type=Path, help="The file of worker_bench.py --scrape.")
    parser.add_argument("output", type=Path, help="The PNG to write.")
    parser.add_argument("--run", type=int, default=1, help="Which run of the file to draw.")
    args = parser.parse_args()
    scraped = json.loads(args.series.read_text(encoding="utf-8"))
    run = next(r for r in scraped["runs"] if r["run"] == args.run)
    store, times = load_store(run["series"])
    interval = run["interval_s"]
    variables = {
        "__rate_interval": f"{round(RATE_INTERVAL_SCRAPES * interval)}s",
        "namespace": ".*",
        "job": ".*",
        "max_request_bytes": str(scraped["settings"]["max_request_bytes"]),
    }
    # Rates need a full window behind them, as Grafana draws nothing before.
    drawn = [t for t in times if t - times[0] >= RATE_INTERVAL_SCRAPES * interval]
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = {p["title"]: p for p in dashboard["panels"]}
    fig, axes = plt.subplots(3, 3, figsize=(16, 10.5))
    for ax, name in zip(axes.flat, PANELS, strict=True):
        draw_panel(ax, panels[name], store, drawn, variables)
    fig.suptitle("\n".join(_wrap(title(scraped, run), 150)), fontsize=10, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(args.output, dpi=72)
    print(f"wrote {args.output} ({args.output.stat().st_size // 1024} KiB)")


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line]


if __name__ == "__main__":
    main()
