"""`aep-connector map` on a raw mapping: what would be sent, and where."""

from __future__ import annotations

from pathlib import Path

import orjson
import yaml

from tests.mapping.test_cli_map import run_cli

FLOW = "f2ae0194-8bd8-4a40-a4d9-f07bdc3e6ce2"


def test_map_prints_each_record_as_sent_and_names_the_flow(tmp_path: Path) -> None:
    mapping = tmp_path / "raw.yaml"
    mapping.write_text(
        yaml.safe_dump(
            {
                "name": "raw",
                "source": {"topics": ["web.events"]},
                "target": {"mode": "raw", "connectionId": "http-api-inlet", "flowId": FLOW},
                "filter": 'kind != "heartbeat"',
            }
        )
    )
    lines = b'{"kind": "order", "id": 1, "note": null}\n{"kind": "heartbeat"}\n[1]\n'
    result = run_cli("map", str(mapping), stdin=lines)
    assert result.returncode == 1  # the array line fails
    assert [orjson.loads(line) for line in result.stdout.splitlines()] == [
        {"kind": "order", "id": 1, "note": None}
    ]
    stderr = result.stderr.decode()
    assert (
        "raw mode: each record below is POSTed alone to /collection/http-api-inlet with "
        f"x-adobe-flow-id: {FLOW}"
    ) in stderr
    assert "line 2: skipped by the filter" in stderr
    assert "line 3: the record value is not an object" in stderr


def test_check_style_problems_of_a_raw_mapping_exit_2(tmp_path: Path) -> None:
    mapping = tmp_path / "raw.yaml"
    mapping.write_text("source: {topics: [a]}\ntarget: {mode: raw, datasetId: ds}\n")
    result = run_cli("map", str(mapping), stdin=b"{}\n")
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert "target.flowId is required with target.mode raw" in stderr
    assert "target.datasetId: not used with target.mode raw" in stderr
