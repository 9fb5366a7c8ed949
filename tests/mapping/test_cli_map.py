"""`aep-connector map` and the mapping part of `aep-connector check`, run as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from tests.mapping.support import base_mapping, write_mapping

EXAMPLES = Path(__file__).resolve().parents[2] / "mappings" / "examples"


def run_cli(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AEP_CONNECTOR_")}
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        env={**base, **(env or {})},
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_map_entity_only_reproduces_the_expected_file() -> None:
    result = run_cli(
        "map",
        str(EXAMPLES / "web-commerce.yaml"),
        str(EXAMPLES / "web-commerce.input.jsonl"),
        "--entity-only",
    )
    assert result.returncode == 0, result.stderr
    expected = (EXAMPLES / "web-commerce.expected.jsonl").read_bytes().splitlines()
    assert [orjson.loads(x) for x in result.stdout.splitlines()] == [
        orjson.loads(x) for x in expected
    ]
    stderr = result.stderr.decode()
    assert "line 4: skipped by the filter" in stderr
    assert "line 5: warning: productListItems[*].quantity" in stderr


def test_map_writes_envelopes_from_stdin() -> None:
    record = (EXAMPLES / "crm-profile.input.jsonl").read_bytes().splitlines()[0]
    result = run_cli(
        "map",
        str(EXAMPLES / "crm-profile.yaml"),
        stdin=record + b"\n",
        env={"AEP_CONNECTOR_PLATFORM__IMS_ORG_ID": "5C13@AdobeOrg"},
    )
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    message = orjson.loads(line)
    header = message["header"]
    assert header["imsOrgId"] == "5C13@AdobeOrg"
    assert header["datasetId"] == "5e6f1c2a9b8d7e0001c3a4b5"
    assert header["source"] == {"name": "ACME CRM"}
    assert header["createdAt"].isdigit()
    assert message["body"]["xdmMeta"]["schemaRef"] == header["schemaRef"]
    assert message["body"]["xdmEntity"]["person"]["birthDate"] == "1969-03-14"


def test_map_reports_bad_lines_and_goes_on(tmp_path: Path) -> None:
    lines = b'{"customerId": "C-1", "email": "a@b.c"}\nnot json\n[1]\n\n{"birthDate": "x"}\n'
    result = run_cli("map", str(EXAMPLES / "crm-profile.yaml"), "--entity-only", stdin=lines)
    assert result.returncode == 1
    assert len(result.stdout.splitlines()) == 1
    stderr = result.stderr.decode()
    assert "line 2: not valid JSON" in stderr
    assert "line 3: the record value is not an object (got array)" in stderr
    assert "line 5: person.birthDate: date: the string does not match" in stderr
    assert "3 line(s) failed" in stderr


def test_map_with_an_invalid_mapping_exits_2(tmp_path: Path) -> None:
    path = write_mapping(tmp_path, base_mapping([{"source": "a", "destination": "b..c"}]))
    result = run_cli("map", str(path), stdin=b"{}\n")
    assert result.returncode == 2
    assert b"destination 'b..c'" in result.stderr


def test_check_validates_every_mapping(tmp_path: Path) -> None:
    write_mapping(tmp_path, base_mapping([{"source": "a", "destination": "b..c"}]), "a.yaml")
    write_mapping(
        tmp_path,
        base_mapping([{"sourceType": "EXPRESSION", "source": "nope(1)", "destination": "x"}]),
        "b.yaml",
    )
    result = run_cli("check", env={"AEP_CONNECTOR_MAPPINGS_DIR": str(tmp_path)})
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert "invalid mappings (2 problem(s))" in stderr
    assert f"{tmp_path / 'a.yaml'}: mappings[0] (line" in stderr
    assert f"{tmp_path / 'b.yaml'}: mappings[0] (line" in stderr


def test_check_accepts_the_examples_with_a_connection() -> None:
    env = {
        "AEP_CONNECTOR_MAPPINGS_DIR": str(EXAMPLES),
        "AEP_CONNECTOR_PLATFORM__CONNECTION_ID": "inlet-1",
    }
    result = run_cli("check", env=env)
    assert result.returncode == 0, result.stderr
    assert b"mappings OK: 2" in result.stderr
    result = run_cli("check", env={"AEP_CONNECTOR_MAPPINGS_DIR": str(EXAMPLES)})
    assert result.returncode == 2
    assert b"no target.connectionId and platform.connection_id is not set" in result.stderr
