"""The Helm chart's README: its values table is generated from values.yaml and the schema."""

from __future__ import annotations

import re

import yaml

from tests.deploy import chart_readme
from tests.deploy.conftest import CHART


def test_chart_readme_values_table_is_current() -> None:
    text = chart_readme.README.read_text(encoding="utf-8")
    assert chart_readme.render_readme(text) == text, (
        "helm/aep-connector/README.md's values table is stale: run scripts/update-generated "
        "(or `.venv/bin/python -m tests.deploy.chart_readme --write`)"
    )


def test_every_value_is_in_the_table() -> None:
    """Each key of values.yaml is a row, or lies under one (a value documented as a whole)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    rows = set(re.findall(r"^\| `([^`]+)` \|", chart_readme.values_table(), re.M))

    def paths(node: object, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
        if isinstance(node, dict) and node:
            return [p for key, child in node.items() for p in paths(child, (*prefix, key))]
        return [prefix]

    missing = [
        ".".join(path)
        for path in paths(values, ())
        if not any(".".join(path[:n]) in rows for n in range(1, len(path) + 1))
    ]
    assert missing == []


def test_table_rows_take_type_default_and_comment() -> None:
    table = chart_readme.values_table()
    assert (
        "| `prometheusRule.alerts.deadLetterRatio.threshold` | number | `0.01` | Dead letters per "
        "record consumed above which the alert fires (0.01: one in a hundred). |"
    ) in table
    # A value documented as a whole is one row, its default shown or referred to.
    assert "| `resources` | object | see values.yaml |" in table
    assert "`resources.requests" not in table
    # Settings are nullable: null keeps the worker's default.
    assert "| `config.ops.port` | integer or null | `8080` |" in table
