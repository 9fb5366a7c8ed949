"""The configuration file and the `emulator` command's handling of it (no server started)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from connector.cli import main
from connector.emulator.app import create_app
from connector.emulator.config import (
    CONTROL_TOKEN_ENV,
    EmulatorConfigError,
    load_config,
    parse_config,
)

REPO = Path(__file__).parents[2]
MANUAL = REPO / "docs" / "emulator.md"


def problems_of(text: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "emulator.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(EmulatorConfigError) as caught:
        load_config(path)
    return [p.removeprefix(f"config file {path}: ") for p in caught.value.problems]


def test_no_file_and_an_empty_file_mean_the_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    for config in (load_config(None), load_config(empty)):
        assert config.connections == {}
        assert config.max_body_bytes == 1_048_576
        assert config.rejection_shape == "statusCode"
        assert config.token_lifetime_s == 86_399
        assert config.max_stored_bytes == 268_435_456
        assert config.control_token is None
        # Every read of a request is bounded by default.
        assert (config.header_timeout_s, config.body_timeout_s, config.idle_timeout_s) == (
            10.0,
            30.0,
            60.0,
        )


def manual_section(heading: str) -> str:
    text = MANUAL.read_text(encoding="utf-8")
    section = text[text.index(f"\n## {heading}\n") :]
    return section[: section.index("\n## ", 1)]


def test_the_manual_example_is_a_valid_configuration(tmp_path: Path) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", manual_section("Configuration file"), re.DOTALL)
    assert len(blocks) == 1
    config = parse_config(yaml.safe_load(blocks[0]), tmp_path)
    assert config.connections["my-inlet"].rate_limit is not None
    dataflows = config.connections["http-api-inlet"].dataflows
    assert dataflows is not None
    assert [flow.dataset for flow in dataflows.values()] == ["5da9452f7de80400007jc52a"]
    assert (config.header_timeout_s, config.body_timeout_s, config.idle_timeout_s) == (10, 30, 60)
    assert config.max_stored_bytes == 268_435_456
    assert config.schemas == {
        "https://ns.adobe.com/acme/schemas/profile": tmp_path / "schemas" / "profile.json"
    }
    assert config.record_file == tmp_path / "accepted.jsonl"
    assert config.faults is not None
    assert config.faults.p503 == 0.1


def test_the_manual_dataflow_example_is_valid_and_the_readme_points_to_the_manual(
    tmp_path: Path,
) -> None:
    section = manual_section("Dataflow inlets and raw payloads")
    (block,) = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    config = parse_config(yaml.safe_load(block), tmp_path)
    assert len(config.connections["http-api-inlet"].dataflows or {}) == 2
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "](docs/emulator.md)" in readme  # a pointer, not a second manual
    assert "## Fault plans" not in readme


def test_every_problem_is_reported_with_its_key(tmp_path: Path) -> None:
    text = """
rejection_shape: statusCodes
connections:
  c1: {authentcation: true, rate_limit: {requests_per_s: 0}}
credentials: [{client_id: x}]
faults: {p503: 0.8, p500: 0.8}
"""
    problems = problems_of(text, tmp_path)
    assert problems == [
        "rejection_shape: Input should be 'statusCode', 'status' or 'status_with_xaction'",
        "connections.c1.rate_limit.requests_per_s: Input should be greater than 0",
        "connections.c1.authentcation: unknown key",
        "credentials.0.client_secret: Field required",
        "faults: p500 + p503 + p429 + p_drop + p_accept_drop must be at most 1, got 1.6",
    ]


def test_the_control_token_comes_from_the_file_or_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "emulator.yaml"
    path.write_text("seed: 1\n", encoding="utf-8")
    assert load_config(path, environ={}).control_token is None
    from_env = load_config(path, environ={CONTROL_TOKEN_ENV: " env-token "}).control_token
    assert from_env is not None
    assert from_env.get_secret_value() == "env-token"
    path.write_text("control_token: file-token\n", encoding="utf-8")
    from_file = load_config(path, environ={CONTROL_TOKEN_ENV: "env-token"}).control_token
    assert from_file is not None
    assert from_file.get_secret_value() == "file-token"
    assert "file-token" not in repr(load_config(path, environ={}))


def test_dataflows_and_tokens_must_not_be_empty(tmp_path: Path) -> None:
    text = """
control_token: "  "
connections:
  a: {dataflows: {}}
  b: {dataflows: {"": {dataset: d}}}
  c: {dataflows: {f1: {dataset: ""}, f2: {}}}
"""
    assert problems_of(text, tmp_path) == [
        "connections.a: dataflows: name at least one flow id (or leave the key out)",
        "connections.b: dataflows: a flow id must not be empty",
        "connections.c.dataflows.f1.dataset: String should have at least 1 character",
        "control_token: must not be empty",
    ]


def test_unreadable_or_malformed_files_are_reported(tmp_path: Path) -> None:
    assert problems_of("connections: [", tmp_path)[0].startswith("not valid YAML")
    assert problems_of("- a\n- b\n", tmp_path) == ["(top level): must be a mapping of keys"]
    with pytest.raises(EmulatorConfigError, match="cannot be read"):
        load_config(tmp_path / "missing.yaml")


def test_bad_schema_files_are_configuration_errors(tmp_path: Path) -> None:
    (tmp_path / "not-json.json").write_text("{", encoding="utf-8")
    (tmp_path / "bad-schema.json").write_text('{"type": 5}', encoding="utf-8")
    config = parse_config(
        {
            "schemas": {
                "https://x/a": "not-json.json",
                "https://x/b": "bad-schema.json",
                "https://x/c": "absent.json",
            }
        },
        tmp_path,
    )
    with pytest.raises(EmulatorConfigError) as caught:
        create_app(config)
    problems = caught.value.problems
    assert len(problems) == 3
    assert "schemas.https://x/a" in problems[0]
    assert "not valid JSON" in problems[0]
    assert "not a valid JSON Schema" in problems[1]
    assert "cannot be read" in problems[2]


def test_the_command_exits_2_and_lists_the_problems(tmp_path: Path) -> None:
    path = tmp_path / "emulator.yaml"
    path.write_text("strict: maybe\nportt: 1\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["emulator", "--config", str(path)])
    assert result.exit_code == 2
    assert "invalid emulator configuration (2 problem(s))" in result.output
    assert "strict: Input should be a valid boolean" in result.output
    assert "portt: unknown key" in result.output


def test_the_command_is_listed_with_its_options() -> None:
    listing = CliRunner().invoke(main, ["--help"])
    assert "emulator" in listing.output
    assert "Run the local emulator of the Platform streaming" in listing.output
    usage = CliRunner().invoke(main, ["emulator", "--help"])
    assert usage.exit_code == 0
    for option in ("--host", "--port", "--config", "127.0.0.1", "8090"):
        assert option in usage.output
