"""What `dlq inspect` reports, and that payloads stay out of it unless asked for."""

from __future__ import annotations

import base64

import orjson

from connector.dlq.selection import Selection
from connector.dlq.summary import payload_line, render_text, summarize
from tests.dlq.letters import Spec

T0 = 1_714_564_800_000  # 2024-05-01T12:00:00Z


def letters() -> list[Spec]:
    def make(n: int, **fields: object) -> Spec:
        base: dict[str, object] = {
            "source_topic": "orders",
            "source_partition": 0,
            "source_offset": n,
            "key": f"key-{n}".encode(),
            "value": f'{{"secret": "payload-{n}"}}'.encode(),
            "timestamp_ms": T0 + n * 1000,
            "message": f"API rejected the message (400): bad {n}",
        }
        base.update(fields)
        return Spec(**base)  # type: ignore[arg-type]

    return [
        make(0),
        make(1, stage="decode", error_class="invalid_json", mapping=None, message="invalid JSON"),
        make(2),
        make(3, source_topic="clicks", mapping="clicks"),
        make(4, original_headers=(("aep.replay.count", b"1"),)),
        make(5, stage="decode", error_class="invalid_json", mapping=None, message="bad JSON 5"),
    ]


def test_counts_by_every_dimension_and_by_group() -> None:
    batch = [spec.letter(0, n) for n, spec in enumerate(letters())]
    summary = summarize("dlq", [batch[:4], batch[4:]], Selection())
    assert (summary.scanned, summary.selected) == (6, 6)
    assert summary.by_stage == {"api": 4, "decode": 2}
    assert summary.by_class == {"api_rejected": 4, "invalid_json": 2}
    assert summary.by_source_topic == {"orders": 5, "clicks": 1}
    assert summary.by_mapping == {"orders": 3, "clicks": 1, "(none)": 2}
    assert summary.by_replay_count == {"0": 5, "1": 1}
    assert (summary.first_ms, summary.last_ms) == (T0, T0 + 5000)
    groups = summary.as_dict()["groups"]
    assert [
        (g["stage"], g["class"], g["source_topic"], g["mapping"], g["count"]) for g in groups
    ] == [
        ("api", "api_rejected", "orders", "orders", 3),
        ("decode", "invalid_json", "orders", "(none)", 2),
        ("api", "api_rejected", "clicks", "clicks", 1),
    ]
    first = groups[0]
    assert (first["first"], first["last"]) == (
        "2024-05-01T12:00:00.000Z",
        "2024-05-01T12:00:04.000Z",
    )
    assert (first["first_offset"], first["last_offset"]) == ("0:0", "0:4")
    assert first["sample_reason"] == "API rejected the message (400): bad 4"  # the latest
    assert groups[1]["sample_reason"] == "bad JSON 5"


def test_only_selected_letters_are_counted() -> None:
    batch = [spec.letter(0, n) for n, spec in enumerate(letters())]
    seen: list[int] = []
    summary = summarize(
        "dlq", [batch], Selection(stages=frozenset({"decode"})), lambda x: seen.append(x.offset)
    )
    assert (summary.scanned, summary.selected) == (6, 2)
    assert seen == [1, 5]
    assert summary.by_stage == {"decode": 2}


def test_the_summary_shows_no_payload() -> None:
    batch = [spec.letter(0, n) for n, spec in enumerate(letters())]
    summary = summarize("dlq", [batch], Selection())
    text = render_text(summary, "every letter")
    shown = text + orjson.dumps(summary.as_dict()).decode()
    assert "payload-" not in shown
    assert "key-" not in shown
    assert "by stage:        api 4, decode 2" in text
    assert "replayed before: never 5, 1x 1" in text
    assert "e.g. API rejected the message (400): bad 4" in text


def test_an_empty_selection_says_so() -> None:
    summary = summarize("dlq", [], Selection())
    assert render_text(summary, "every letter") == (
        "dead-letter topic dlq: 0 letters read, 0 selected (every letter)\n"
    )


def test_payload_line_shows_text_and_base64_for_other_bytes() -> None:
    spec = Spec("orders", 1, 2, b"\xff\xfe", b'{"a": 1}', original_headers=(("h", None),))
    line = orjson.loads(payload_line(spec.letter(0, 9)))
    assert line["offset"] == 9
    assert line["key"] == {"base64": base64.b64encode(b"\xff\xfe").decode()}
    assert line["value"] == '{"a": 1}'
    assert line["headers"][0] == ["h", None]
    assert ["aep.dlq.stage", "api"] in line["headers"]
