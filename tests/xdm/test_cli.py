"""`aep-connector map` reports XDM violations per record; `check` refuses mappings that do not
fit their schema (exit 2) and prints the warnings."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from connector.cli import main
from tests.xdm.support import EVENT_SCHEMA, EXAMPLES, expected_entities
from tests.xdm.test_mapping_check import EVENT_BASICS, write_mapping


@pytest.fixture(autouse=True)
def no_connector_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith("AEP_CONNECTOR_"):
            monkeypatch.delenv(name)


def run(*args: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin, env=env, catch_exceptions=False)


def event_mapping(directory: Path) -> Path:
    """Events with an id, a timestamp and a device type copied as they are."""
    return write_mapping(
        directory,
        EVENT_BASICS + "  - {source: device, destination: device.type}\n",
        schema=EVENT_SCHEMA,
    )


def test_map_reports_each_violation_with_its_line_and_skips_the_record(tmp_path: Path) -> None:
    lines = [
        {"id": "1", "ts": "2024-05-01T12:00:00Z", "device": "mobile"},
        {"id": "2", "ts": "2024-05-01T12:00:01Z", "device": "secret-phone-model"},
        {"id": "3", "ts": "2024-05-01T12:00:02Z", "device": "desktop"},
    ]
    stdin = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    result = run("map", str(event_mapping(tmp_path)), "--entity-only", stdin=stdin)
    assert result.exit_code == 1
    entities = [orjson.loads(line) for line in result.stdout_bytes.splitlines()]
    assert [e["device"]["type"] for e in entities] == ["mobile", "desktop"]
    assert "line 2: invalid XDM: /device/type: the value is not one of" in result.stderr
    assert "(enum)" in result.stderr
    assert "secret-phone-model" not in result.stderr
    assert "1 line(s) failed" in result.stderr


def test_map_of_the_examples_finds_no_violation() -> None:
    for name in ("web-commerce", "crm-profile"):
        result = run(
            "map",
            str(EXAMPLES / f"{name}.yaml"),
            str(EXAMPLES / f"{name}.input.jsonl"),
            "--entity-only",
        )
        assert result.exit_code == 0, result.stderr
        assert "invalid XDM" not in result.stderr
        produced = [orjson.loads(line) for line in result.stdout_bytes.splitlines()]
        assert produced == expected_entities(name)


def test_check_refuses_a_mapping_that_does_not_fit_its_schema(tmp_path: Path) -> None:
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    path = write_mapping(mappings, "  - {source: ua, destination: environment.browserDetails.ua}\n")
    result = run(
        "check",
        env={
            "AEP_CONNECTOR_MAPPINGS_DIR": str(mappings),
            "AEP_CONNECTOR_PLATFORM__CONNECTION_ID": "inlet-1",
        },
    )
    assert result.exit_code == 2
    assert "invalid mappings (3 problem(s)):" in result.stderr
    assert f"  - {path}: mappings[0] (line 9): destination environment.browserDetails.ua" in (
        result.stderr
    )
    assert f"  - {path}: validate (line 6): required field _id has no mapping" in result.stderr
    assert f"  - {path}: validate (line 6): required field timestamp has no mapping" in (
        result.stderr
    )


def test_check_prints_warnings_and_passes(tmp_path: Path) -> None:
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    path = write_mapping(
        mappings,
        EVENT_BASICS
        + "  - {sourceType: EXPRESSION, source: 'upper(c)', destination: commerce.order}\n",
    )
    result = run(
        "check",
        env={
            "AEP_CONNECTOR_MAPPINGS_DIR": str(mappings),
            "AEP_CONNECTOR_PLATFORM__CONNECTION_ID": "inlet-1",
        },
    )
    assert result.exit_code == 0, result.stderr
    assert (
        f"warning: {path}: mappings[2] (line 11): destination commerce.order: the expression "
        "gives a single value, but the schema wants an object"
    ) in result.stderr
    assert "mappings OK: 1" in result.stderr
