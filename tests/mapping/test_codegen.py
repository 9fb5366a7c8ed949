"""The generated source: readable (`map --explain`), and safe by construction: text from the
mapping file never becomes code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.mapping.support import META, mapping_of

EXAMPLES = Path(__file__).resolve().parents[2] / "mappings" / "examples"
KEY = "x'] = 1\nimport os\nos_exit(3)\n#"  # a field name (no dot: dots separate names)


def test_map_explain_prints_the_generated_function() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEP_CONNECTOR_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "connector",
            "map",
            str(EXAMPLES / "web-commerce.yaml"),
            "--explain",
        ],
        capture_output=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    source = result.stdout.decode()
    assert source.startswith("# The generated function of mapping web-commerce")
    assert "def map_record(root, meta, deadline, warnings):" in source
    assert '# mappings[0] (line 23): _id = sha256(concat(visitorId, "|", eventId))' in source
    compile(source, "explain", "exec")  # what is printed is the real, valid source


def test_field_names_and_literals_cannot_inject_code(tmp_path: Path) -> None:
    hostile = "x'] = 1\nimport os\nos._exit(3)\n#"
    mapping = mapping_of(
        tmp_path,
        [
            {"source": "${" + KEY + "}", "destination": "a"},
            {"sourceType": "EXPRESSION", "source": f'"{hostile}\\n" + b', "destination": "c"},
            {"sourceType": "STATIC", "source": hostile, "destination": "d"},
        ],
    )
    record = {KEY: 1, "b": "B"}
    entity = mapping.apply(record, META).entity
    assert entity == {"a": 1, "c": hostile + "\nB", "d": hostile}
    for line in mapping.source.splitlines():
        assert not line.lstrip().startswith(("import", "os."))
