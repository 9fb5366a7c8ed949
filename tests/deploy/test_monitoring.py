"""The chart's Grafana dashboard and Prometheus alert rules.

The dashboard JSON is checked as Grafana reads it (panels, grid, targets, variables), its PromQL
is parsed, every metric it names must be one connector/metrics.py defines, and every query is
evaluated on the metrics of a real `Metrics` object (tests/support/promql.py), so that a panel
that would stay empty fails here. The alert rules are rendered by Helm and evaluated on series
made by the same `Metrics` object, scrape after scrape: each alert fires in its situation, with
its `for`, and stays quiet in the situations next to it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram, generate_latest

from connector.metrics import Metrics
from connector.settings import BatchingSettings
from tests.deploy.conftest import CHART, NAMESPACE, Helm, Rendered, scenario_file
from tests.support import promql

DASHBOARD_FILE = CHART / "dashboards" / "aep-connector.json"
#: Metrics of branches not merged yet whose panels the dashboard already has. A panel may name
#: them while connector/metrics.py does not define them; once it does,
#: test_pending_metrics_are_still_pending asks to remove them from here. None at present.
PENDING_METRICS: set[str] = set()
#: Labels Prometheus adds to every scraped series (the ServiceMonitor's target labels).
TARGET_LABELS = {"namespace", "job", "instance", "pod", "service", "container", "endpoint"}
#: Grafana's variables as the checks substitute them.
VARIABLES = {
    "__rate_interval": "2m",
    "namespace": ".*",
    "job": ".*",
    "max_request_bytes": "1000000",
}
#: Label values given to the exercised metrics, by label name.
LABEL_VALUES = {
    "topic": "web.commerce",
    "partition": "3",
    "mapping": "web-commerce",
    "stage": "decode",
    "reason": "503",
    "status": "200",
    "result": "ok",
    "connection": "inlet-1",
}


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    return dashboard


def graph_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def all_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable, variables substituted."""
    for panel in graph_panels(dashboard):
        for target in panel["targets"]:
            where = f"panel {panel['title']!r} target {target['refId']}"
            yield where, promql.substitute(target["expr"], VARIABLES)
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.+), *(\w+)\)", variable["query"]["query"])
            assert match, f"variable {variable['name']}: expected label_values(selector, label)"
            yield f"variable {variable['name']}", promql.substitute(match.group(1), VARIABLES)


# --- what the worker exports ----------------------------------------------------------------


def _collectors(metrics: Metrics) -> list[Counter | Gauge | Histogram]:
    return [v for v in vars(metrics).values() if isinstance(v, Counter | Gauge | Histogram)]


def exported_series() -> dict[str, set[str]]:
    """Every sample name the worker exports, with the label names its series carry."""
    series: dict[str, set[str]] = {}
    for metric in _collectors(Metrics()):
        labels = set(metric._labelnames)
        [family] = metric.describe()
        if isinstance(metric, Counter):
            series[family.name + "_total"] = labels
        elif isinstance(metric, Histogram):
            series[family.name + "_bucket"] = labels | {"le"}
            series[family.name + "_sum"] = labels
            series[family.name + "_count"] = labels
        else:
            series[family.name] = labels
    return series


EXPORTED = exported_series()


def exercise(metrics: Metrics, times: int) -> None:
    """Every metric given a value: counters and histograms `times` more, gauges set."""
    for metric in _collectors(metrics):
        names = metric._labelnames
        child = metric.labels(*(LABEL_VALUES.get(n, "x") for n in names)) if names else metric
        if isinstance(metric, Counter):
            child.inc(10 * times)
        elif isinstance(metric, Histogram):
            for _ in range(times):
                child.observe(0.3)
        else:
            child.set(5)


def two_scrapes() -> promql.Store:
    """The worker's /metrics a minute apart, with every metric moving, as Prometheus stores
    them (with the target's labels)."""
    metrics = Metrics()
    store = promql.Store()
    for t in (0.0, 60.0):
        exercise(metrics, 1)
        text = generate_latest(metrics.registry).decode()
        target = {"namespace": NAMESPACE, "job": "rel-aep-connector", "instance": "10.1.2.3:8080"}
        store.add(t, [(n, labels | target, v) for n, labels, v in promql.parse_exposition(text)])
    return store


# --- the dashboard as Grafana reads it ------------------------------------------------------


def test_dashboard_structure() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "aep-connector"
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    assert dashboard["schemaVersion"] >= 36
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = [p["title"] for p in graph_panels(dashboard)]
    assert len(titles) == len(set(titles)), "panel titles must be unique"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in graph_panels(dashboard):
        assert panel["type"] in ("timeseries", "stat"), panel["title"]
        assert panel["description"], f"{panel['title']}: say what the panel shows"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        targets = panel["targets"]
        assert targets, f"{panel['title']} has no query"
        refs = [t["refId"] for t in targets]
        assert len(refs) == len(set(refs)), f"{panel['title']}: duplicate refId"
        for target in targets:
            assert target["expr"].strip()
            assert target["datasource"] == panel["datasource"]
        for override in panel["fieldConfig"]["overrides"]:
            if override["matcher"]["id"] == "byFrameRefID":
                assert override["matcher"]["options"] in refs, panel["title"]


def test_dashboard_grid_has_no_overlaps() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in load_dashboard()["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0
        assert grid["w"] >= 1
        assert grid["h"] >= 1
        assert grid["x"] + grid["w"] <= 24, f"{panel['title']} is wider than the grid"
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_dashboard_queries_parse_and_name_only_exported_metrics() -> None:
    unknown: list[str] = []
    for where, expr in all_queries(load_dashboard()):
        try:
            names = promql.metric_names(expr)
        except ValueError as exc:  # promql_parser's syntax errors are ValueErrors
            pytest.fail(f"{where}: {exc}\n{expr}")
        assert names, f"{where} selects no metric"
        unknown += [f"{where}: {n}" for n in sorted(names - EXPORTED.keys() - PENDING_METRICS)]
    assert unknown == [], "panels name metrics that connector/metrics.py does not define"


def test_pending_metrics_are_still_pending() -> None:
    merged = PENDING_METRICS & EXPORTED.keys()
    assert merged == set(), f"connector/metrics.py now defines {merged}: drop from PENDING_METRICS"


def test_every_exported_metric_is_on_the_dashboard() -> None:
    shown = {n for _, expr in all_queries(load_dashboard()) for n in promql.metric_names(expr)}
    families = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in shown}
    missing = {n for n in EXPORTED if re.sub(r"_(total|bucket|sum|count)$", "", n) not in families}
    assert missing == set(), "add a panel for each metric the worker exports"


def test_grouping_labels_exist_on_the_series() -> None:
    """`by (label)` names a label of the metrics it aggregates (or a target label)."""
    problems: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            below = promql.metric_names(str(node.expr))
            known = set(TARGET_LABELS)
            for name in below & EXPORTED.keys():
                known |= EXPORTED[name]
            if below - EXPORTED.keys():
                return  # a pending metric: its labels are not known here
            problems.extend(f"{where}: by {label}" for label in set(node.modifier.labels) - known)
        for child in promql._children(node):
            walk(child, where)

    for where, expr in all_queries(load_dashboard()):
        walk(promql_parser.parse(expr), where)
    assert problems == []


def test_every_query_draws_from_a_workers_metrics() -> None:
    """Evaluated on two scrapes of a worker whose every metric moved, each query returns
    series with finite values, and each legend's {{label}} is a label of those series."""
    store = two_scrapes()
    empty: list[str] = []
    for panel in graph_panels(load_dashboard()):
        for target in panel["targets"]:
            expr = promql.substitute(target["expr"], VARIABLES)
            where = f"{panel['title']!r} {target['refId']}"
            if promql.metric_names(expr) & PENDING_METRICS - EXPORTED.keys():
                continue  # the worker of this branch does not export it yet
            result = promql.evaluate(expr, store, 60.0)
            assert isinstance(result, dict), f"{where}: a panel query must return a vector"
            if not result or not all(math.isfinite(v) for v in result.values()):
                empty.append(f"{where}: {result}")
                continue
            for labels in result:
                names = {name for name, _ in labels}
                wanted = set(re.findall(r"\{\{ *(\w+) *\}\}", target["legendFormat"]))
                assert wanted <= names, f"{where}: legend labels {wanted - names} not on {labels}"
    assert empty == []


def test_a_query_on_an_undefined_metric_fails_the_check() -> None:
    """The check above is not vacuous: a misspelt metric name yields nothing."""
    store = two_scrapes()
    assert promql.evaluate("sum(rate(aep_connector_records_consumed_total[2m]))", store, 60.0)
    assert promql.evaluate("sum(rate(aep_connector_record_consumed_total[2m]))", store, 60.0) == {}
    assert "aep_connector_record_consumed_total" not in EXPORTED


def test_max_request_bytes_variable_defaults_to_the_worker_default() -> None:
    variables = {v["name"]: v for v in load_dashboard()["templating"]["list"]}
    default = str(BatchingSettings.model_fields["max_request_bytes"].default)
    assert variables["max_request_bytes"]["query"] == default
    assert variables["max_request_bytes"]["current"]["value"] == default


# --- the dashboard ConfigMap ------------------------------------------------------------------

pytestmark_helm = pytest.mark.integration


def _dashboard_configmap(rendered: Rendered) -> dict[str, Any]:
    [configmap] = [
        c for c in rendered.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-dashboard")
    ]
    return configmap


@pytestmark_helm
def test_dashboard_configmap_for_the_grafana_sidecar(chart: Helm) -> None:
    values = yaml.safe_load(scenario_file("monitoring").read_text(encoding="utf-8"))
    configmap = _dashboard_configmap(chart.scenario("monitoring"))
    metadata = configmap["metadata"]
    assert metadata["namespace"] == values["dashboards"]["namespace"]
    assert metadata["labels"]["grafana_dashboard"] == "aep"
    assert metadata["labels"]["team"] == "data-platform"
    assert metadata["annotations"] == {"grafana_folder": "Kafka"}
    [(key, text)] = configmap["data"].items()
    assert key.endswith(".json")
    shipped = json.loads(text)
    expected = load_dashboard()
    # The file as it is, but for the default of max_request_bytes, taken from the values.
    variable = next(v for v in expected["templating"]["list"] if v["name"] == "max_request_bytes")
    variable["query"] = "800000"
    variable["current"] = {"text": "800000", "value": "800000"}
    variable["options"] = [{"selected": True, "text": "800000", "value": "800000"}]
    assert shipped == expected


@pytestmark_helm
def test_dashboard_defaults(chart: Helm) -> None:
    rendered = chart.scenario("minimal", sets=["dashboards.enabled=true"])
    configmap = _dashboard_configmap(rendered)
    assert configmap["metadata"]["namespace"] == NAMESPACE
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(configmap["data"]["aep-connector.json"])
    assert shipped == load_dashboard()


@pytestmark_helm
def test_monitoring_is_off_by_default(chart: Helm) -> None:
    rendered = chart.scenario("minimal")
    assert "PrometheusRule" not in rendered.kinds
    assert [c["metadata"]["name"] for c in rendered.of_kind("ConfigMap")] == [
        "rel-aep-connector-mappings"
    ]


# --- the PrometheusRule as its CRD defines it ---------------------------------------------------

#: Fields of monitoring.coreos.com/v1 PrometheusRule's spec.groups[] and their rules[].
GROUP_FIELDS = {"name", "interval", "rules", "limit", "partial_response_strategy", "query_offset"}
RULE_FIELDS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
DURATION = re.compile(
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
EXPECTED_ALERTS = {
    "AepConnectorHalted",
    "AepConnectorDeadLetterRatioHigh",
    "AepConnectorConsumerLagGrowing",
    "AepConnectorNoAcknowledgements",
}


def _rules(rendered: Rendered) -> dict[str, dict[str, Any]]:
    [group] = rendered.one("PrometheusRule")["spec"]["groups"]
    return {rule["alert"]: rule for rule in group["rules"]}


@pytestmark_helm
def test_prometheus_rule_is_well_formed(chart: Helm) -> None:
    rendered = chart.scenario("monitoring")
    rule_doc = rendered.one("PrometheusRule")
    assert rule_doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule_doc["metadata"]["namespace"] == NAMESPACE
    assert rule_doc["metadata"]["labels"]["release"] == "prometheus"
    assert set(rule_doc["spec"]) == {"groups"}
    [group] = rule_doc["spec"]["groups"]
    assert set(group) <= GROUP_FIELDS
    assert isinstance(group["name"], str)
    assert group["name"]
    names = []
    for rule in group["rules"]:
        assert set(rule) <= RULE_FIELDS, set(rule) - RULE_FIELDS
        names.append(rule["alert"])
        assert isinstance(rule["expr"], str)
        assert DURATION.match(rule["for"]), rule["for"]
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["labels"]["team"] == "data-platform"
        assert all(isinstance(v, str) for v in rule["labels"].values())
        assert set(rule["annotations"]) == {"summary", "description"}
        assert all(isinstance(v, str) for v in rule["annotations"].values())
        # PromQL that parses and names only what the worker exports.
        assert promql.metric_names(rule["expr"]) <= EXPORTED.keys()
    assert set(names) == EXPECTED_ALERTS
    assert len(names) == len(set(names))


@pytestmark_helm
def test_alerts_can_be_turned_off(chart: Helm) -> None:
    rendered = chart.scenario(
        "monitoring",
        sets=[
            "prometheusRule.alerts.lagGrowing.enabled=false",
            "prometheusRule.alerts.halted.enabled=false",
        ],
    )
    assert set(_rules(rendered)) == EXPECTED_ALERTS - {
        "AepConnectorConsumerLagGrowing",
        "AepConnectorHalted",
    }


@pytestmark_helm
def test_rules_without_a_servicemonitor_need_a_selector(chart: Helm) -> None:
    error = chart.template_error(scenario_file("minimal"), sets=["prometheusRule.enabled=true"])
    assert (
        "prometheusRule.enabled needs serviceMonitor.enabled, or prometheusRule.selector" in error
    )
    rendered = chart.scenario(
        "minimal",
        sets=["prometheusRule.enabled=true", 'prometheusRule.selector=job="aep"'],
    )
    for rule in _rules(rendered).values():
        assert "aep_connector_" in rule["expr"]
        assert re.findall(r"\{([^}]*)\}", rule["expr"]) == ['job="aep"'] * len(
            re.findall(r"\{", rule["expr"])
        )


@pytestmark_helm
@pytest.mark.parametrize(
    ("assignment", "complaint"),
    [
        ("prometheusRule.alerts.deadLetterRatio.threshold=2", "threshold"),
        ("prometheusRule.alerts.halted.for=soon", "for"),
        ("prometheusRule.alerts.lagGrowing.minLag=-1", "minLag"),
        ("prometheusRule.alerts.noAcknowledgements.window=10", "window"),
        ("prometheusRule.alerts.halted.page=true", "page"),
        ('prometheusRule.selector={job="x"}', "selector"),
        ("dashboards.label=", "label"),
        ("dashboards.folder=Kafka", "folder"),
    ],
)
def test_monitoring_values_schema_rejects(chart: Helm, assignment: str, complaint: str) -> None:
    error = chart.template_error(scenario_file("monitoring"), sets=[assignment])
    assert "schema" in error, error
    assert complaint in error, error


# --- the alerts, evaluated ----------------------------------------------------------------------

STEP_S = 15.0
OURS = {"namespace": NAMESPACE, "job": "rel-aep-connector", "instance": "10.1.2.3:8080"}
OTHER = {"namespace": NAMESPACE, "job": "other-aep-connector", "instance": "10.1.2.4:8080"}


@dataclass
class Worker:
    """A worker's metrics as Prometheus scrapes them: its own labels plus the target's."""

    target: dict[str, str]
    metrics: Metrics

    def scrape(self) -> list[tuple[str, dict[str, str], float]]:
        text = generate_latest(self.metrics.registry).decode()
        return [(n, labels | self.target, v) for n, labels, v in promql.parse_exposition(text)]


Story = Callable[[Metrics, float], None]


def play(ours: Story, minutes: float, other: Story | None = None) -> promql.Store:
    """Scrape every 15 s for `minutes` while `ours` (and another release's `other`) move the
    metrics; returns the series."""
    workers = [(Worker(OURS, Metrics()), ours)]
    if other is not None:
        workers.append((Worker(OTHER, Metrics()), other))
    store = promql.Store()
    steps = int(minutes * 60 / STEP_S)
    for step in range(steps + 1):
        t = step * STEP_S
        samples = []
        for worker, story in workers:
            story(worker.metrics, t)
            samples += worker.scrape()
        store.add(t, samples)
    return store


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m|h)", duration)
    assert match, duration
    return int(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def fires(rule: dict[str, Any], store: promql.Store, at: float) -> bool:
    """Whether the alert is firing at `at`: its expression returned series at every
    evaluation (every 15 s) over the `for` before it."""
    hold = seconds(rule["for"])
    t = at - hold
    while t <= at:
        result = promql.evaluate(rule["expr"], store, t)
        assert isinstance(result, dict)
        if not result:
            return False
        for labels in result:
            assert dict(labels).get("job") == OURS["job"], "an alert on another release"
        t += STEP_S
    return True


@pytest.fixture(scope="module")
def rules(chart: Helm) -> dict[str, dict[str, Any]]:
    return _rules(chart.scenario("monitoring"))


def steady(consumed_per_step: int = 1000, accepted_per_step: int = 1000) -> Story:
    def story(m: Metrics, t: float) -> None:
        m.records_consumed.labels("web.commerce").inc(consumed_per_step)
        if accepted_per_step:
            m.records_accepted.labels("web-commerce").inc(accepted_per_step)

    return story


@pytestmark_helm
def test_halted_alert(rules: dict[str, dict[str, Any]]) -> None:
    rule = rules["AepConnectorHalted"]
    assert rule["for"] == "2m"

    def halts_at(minute: float) -> Story:
        def story(m: Metrics, t: float) -> None:
            steady()(m, t)
            m.halted.set(1 if t >= minute * 60 else 0)

        return story

    assert fires(rule, play(halts_at(10), 20), 20 * 60)
    assert not fires(rule, play(halts_at(99), 20), 20 * 60)
    # Halted for one minute only: not yet, because of `for: 2m`.
    assert not fires(rule, play(halts_at(19), 20), 20 * 60)
    # Another release's halted worker is not ours.
    assert not fires(rule, play(halts_at(99), 20, other=halts_at(1)), 20 * 60)


@pytestmark_helm
def test_dead_letter_ratio_alert(rules: dict[str, dict[str, Any]]) -> None:
    rule = rules["AepConnectorDeadLetterRatioHigh"]
    assert "> 0.02" in rule["expr"]

    def dead_letters(per_thousand: int) -> Story:
        def story(m: Metrics, t: float) -> None:
            steady(1000, 1000 - per_thousand)(m, t)
            if per_thousand:
                m.records_dead_lettered.labels("decode", "json").inc(per_thousand)

        return story

    assert fires(rule, play(dead_letters(30), 40), 40 * 60)  # 3 % > 2 %
    assert not fires(rule, play(dead_letters(10), 40), 40 * 60)  # 1 %
    assert not fires(rule, play(dead_letters(0), 40), 40 * 60)  # none, no series at all
    assert not fires(rule, play(dead_letters(0), 40, other=dead_letters(500)), 40 * 60)


@pytestmark_helm
def test_consumer_lag_growing_alert(rules: dict[str, dict[str, Any]]) -> None:
    rule = rules["AepConnectorConsumerLagGrowing"]
    assert "> 50000" in rule["expr"]

    def lag(start: int, per_step: int) -> Story:
        def story(m: Metrics, t: float) -> None:
            steady()(m, t)
            for partition in ("0", "1"):
                m.consumer_lag.labels("web.commerce", partition).set(start + per_step * t / STEP_S)

        return story

    assert fires(rule, play(lag(30_000, 100), 60), 60 * 60)  # 60,000 and growing
    assert not fires(rule, play(lag(100_000, -100), 60), 60 * 60)  # large but shrinking
    assert not fires(rule, play(lag(30_000, 0), 60), 60 * 60)  # large but steady
    assert not fires(rule, play(lag(100, 5), 60), 60 * 60)  # growing, but below minLag


@pytestmark_helm
def test_no_acknowledgements_alert(rules: dict[str, dict[str, Any]]) -> None:
    rule = rules["AepConnectorNoAcknowledgements"]

    def accepts_until(minute: float) -> Story:
        def story(m: Metrics, t: float) -> None:
            steady(1000, 1000 if t < minute * 60 else 0)(m, t)

        return story

    def idle(m: Metrics, t: float) -> None:
        m.records_consumed.labels("web.commerce").inc(0)
        m.records_accepted.labels("web-commerce").inc(0)

    assert fires(rule, play(steady(1000, 0), 30), 30 * 60)  # accepted never exported
    assert fires(rule, play(accepts_until(5), 30), 30 * 60)  # stopped 25 minutes ago
    assert not fires(rule, play(accepts_until(99), 30), 30 * 60)
    assert not fires(rule, play(accepts_until(22), 30), 30 * 60)  # stopped 8 minutes ago
    assert not fires(rule, play(idle, 30), 30 * 60)  # nothing to send is not an outage
