"""Issue 11's mapping cases, each as a hostile producer would try it: no record can make the
mapping backtrack, build huge strings, fill caches, run past its budget or crash on depth."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import re2

from connector.mapping import MappingFailure, MappingLoadError, Runtime, load_mapping_file
from connector.mapping.functions import _split_url
from connector.mapping.limits import CACHE_MAX_KEY_CHARS, MappingLimits
from connector.mapping.mapping import STARVED_ATTEMPTS
from connector.mapping.regexes import compile_pattern
from connector.mapping.useragent import _agent_info, agent_info
from tests.mapping.support import DEFAULTS, META, RUNTIME, evaluate, mapping_of, write_mapping

EXAMPLES = Path(__file__).resolve().parents[2] / "mappings" / "examples"
RE2_PATTERN = type(re2.compile("x"))  # what the RE2 engine compiles a pattern into
ROOT = Path(__file__).resolve().parents[2]


def expression(source: str, destination: str = "out") -> dict[str, str]:
    return {"sourceType": "EXPRESSION", "source": source, "destination": destination}


@pytest.mark.parametrize(
    ("pattern", "text", "suffix"),
    [("([^,]+),[^,]*,([^,]+)", "a" * 60_000, ",b,c"), ("(\\d+)-(\\d+)", "1" * 60_000, "-2")],
)
def test_backtracking_patterns_run_on_re2(pattern: str, text: str, suffix: str) -> None:
    # On Python's re these took seconds to minutes (issue 11); RE2 is linear.
    assert isinstance(compile_pattern(pattern, MappingLimits()), RE2_PATTERN)
    assert evaluate(f'extract_regex(s, "{pattern}")', {"s": text}) is None
    assert evaluate(f'extract_regex(s, "{pattern}")', {"s": text + suffix}) is not None


def test_a_pattern_re2_cannot_run_is_reported_at_load_and_guarded(tmp_path: Path) -> None:
    mapping = mapping_of(tmp_path, [expression('extract_regex(s, "(a+)\\\\1")'), _copy("x", "k")])
    assert any("not RE2-compatible" in notice for notice in mapping.notices)
    assert mapping.apply({"s": "aaaa"}, META).entity == {"out": ["aaaa", "aa"]}
    result = mapping.apply({"s": "a" * 20_000, "x": 1}, META)  # over the fallback's input cap
    assert result.entity == {"k": 1}
    assert "regex that RE2 cannot run" in result.warnings[0]


def test_a_runaway_fallback_regex_is_too_slow_not_a_blocked_loop(tmp_path: Path) -> None:
    # In a process of its own: a regex without its time bound would hang here, not fail.
    path = write_mapping(tmp_path, _base([expression('matches_regex(s, "(a|aa)+\\\\1$")')]))
    script = f"""
from pathlib import Path
from connector.mapping import MappingFailure, load_mapping_file
from connector.mapping.limits import MappingLimits
from tests.mapping.support import DEFAULTS, META, RUNTIME
limits = MappingLimits(evaluation_budget_ms=50)
mapping = load_mapping_file(Path({str(path)!r}), DEFAULTS, runtime=RUNTIME, limits=limits)
try:
    mapping.apply({{"s": "a" * 5000 + "b"}}, META)
except MappingFailure as failure:
    print(failure.reason)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=60, check=True, cwd=ROOT
    )
    assert result.stdout.split() == [b"too_slow"]


def test_long_strings_are_never_dates() -> None:
    # Two adjacent unbounded fields backtrack quadratically on a long string: it must be
    # refused before the regex runs. In a process of its own: unguarded, this would hang.
    script = """
from connector.mapping.dates import pattern
print(pattern("EEEEzzzz").parse("a" * 200_000 + "!"))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=60, check=True, cwd=ROOT
    )
    assert result.stdout.split() == [b"None"]


def test_replacestr_cannot_build_a_huge_string(tmp_path: Path) -> None:
    mapping = mapping_of(tmp_path, [expression("replacestr(s, find, s)"), _copy("s", "kept")])
    record = {"s": "a" * 302_000, "find": "a"}  # would be 91 billion characters
    result = mapping.apply(record, META)
    assert result.entity == {"kept": record["s"]}
    assert "replacestr: the result would be" in result.warnings[0]


@pytest.mark.parametrize(
    "source",
    [
        "concat(s, s, s, s, s)",
        'join(",", a)',
        "lpad(s, 2000000)",
        's + s + "x" + s',  # nested + (each one checked)
        '"x" + s + s + s',  # one string chain (checked once, whole)
    ],
)
def test_string_building_is_capped(tmp_path: Path, source: str) -> None:
    limits = MappingLimits(max_string_length=1000)
    path = write_mapping(tmp_path, _base([expression(source), _copy("k", "kept")]))
    mapping = load_mapping_file(path, DEFAULTS, runtime=RUNTIME, limits=limits)
    result = mapping.apply({"s": "x" * 400, "a": ["y" * 300] * 5, "k": 1}, META)
    assert result.entity == {"kept": 1}
    assert "1000" in result.warnings[0]


def test_caches_skip_long_record_strings() -> None:
    _split_url.cache_clear()  # type: ignore[attr-defined]
    long_url = "https://x.example/?q=" + "a" * (CACHE_MAX_KEY_CHARS + 1)
    assert _split_url(long_url) is not None
    assert _split_url.cache_info().currsize == 0  # type: ignore[attr-defined]
    _split_url("https://x.example/short")
    assert _split_url.cache_info().currsize == 1  # type: ignore[attr-defined]


def test_evaluation_budget_fails_the_record_as_too_slow(tmp_path: Path) -> None:
    ticks = itertools.count()
    runtime = Runtime(now_ms=RUNTIME.now_ms, new_uuid=RUNTIME.new_uuid, clock=lambda: next(ticks))
    limits = MappingLimits(evaluation_budget_ms=5000)  # 5 ticks of the fake clock
    entries = [_copy("items[*].a", "out[*].a")]
    path = write_mapping(tmp_path, _base(entries))
    mapping = load_mapping_file(path, DEFAULTS, runtime=runtime, limits=limits)
    assert mapping.apply({"items": [{"a": 1}] * 3}, META).entity == {"out": [{"a": 1}] * 3}
    with pytest.raises(MappingFailure) as failure:
        mapping.apply({"items": [{"a": 1}] * 100}, META)  # one clock check per element
    assert failure.value.reason == "too_slow"
    assert "out[*]" in str(failure.value)


def _budget_mapping(tmp_path: Path, wall: Callable[[], float], cpu: Callable[[], float]) -> Any:
    """A mapping with a budget check per array element and a 5-second budget, on fake clocks."""
    runtime = Runtime(now_ms=RUNTIME.now_ms, new_uuid=RUNTIME.new_uuid, clock=wall, cpu_clock=cpu)
    path = write_mapping(tmp_path, _base([_copy("items[*].a", "out[*].a")]))
    limits = MappingLimits(evaluation_budget_ms=5000)
    return load_mapping_file(path, DEFAULTS, runtime=runtime, limits=limits)


def test_a_record_whose_thread_only_waited_is_mapped_again(tmp_path: Path) -> None:
    # The wall clock jumps 100 s during the first attempt (the thread was preempted, or its CPU
    # quota throttled) while no CPU time passes: the record is mapped, not dead-lettered.
    readings = iter([0.0, 100.0])
    mapping = _budget_mapping(tmp_path, lambda: next(readings, 200.0), lambda: 0.0)
    assert mapping.apply({"items": [{"a": 1}] * 3}, META).entity == {"out": [{"a": 1}] * 3}


def test_a_record_that_spends_its_budget_computing_fails_on_the_second_attempt(
    tmp_path: Path,
) -> None:
    ticks = itertools.count()
    cpu_readings: list[float] = []

    def cpu() -> float:  # the thread computes all the time: CPU time follows the wall clock
        cpu_readings.append(float(len(cpu_readings) * 10))
        return cpu_readings[-1]

    mapping = _budget_mapping(tmp_path, lambda: next(ticks), cpu)
    with pytest.raises(MappingFailure) as failure:
        mapping.apply({"items": [{"a": 1}] * 100}, META)
    assert failure.value.reason == "too_slow"
    assert len(cpu_readings) == 2  # one measured attempt after the first


def test_a_thread_that_keeps_waiting_gives_up_after_the_starved_attempts(tmp_path: Path) -> None:
    ticks = itertools.count()
    cpu_readings: list[float] = []
    mapping = _budget_mapping(tmp_path, lambda: next(ticks), lambda: cpu_readings.append(0) or 0)
    with pytest.raises(MappingFailure) as failure:
        mapping.apply({"items": [{"a": 1}] * 100}, META)
    assert failure.value.reason == "too_slow"
    assert len(cpu_readings) == 2 * STARVED_ATTEMPTS  # then the loop moves on


def _ticking(budget_ticks: int) -> tuple[Runtime, MappingLimits]:
    """A clock that advances one tick (second) per reading, and a budget of so many ticks."""
    ticks = itertools.count()
    runtime = Runtime(now_ms=RUNTIME.now_ms, new_uuid=RUNTIME.new_uuid, clock=lambda: next(ticks))
    return runtime, MappingLimits(evaluation_budget_ms=budget_ticks * 1000)


def test_the_budget_is_checked_before_each_costly_field(tmp_path: Path) -> None:
    # split() grows with its input: one clock reading before each such field.
    runtime, limits = _ticking(5)
    entries = [expression("split(s)", f"out{i}") for i in range(8)]
    path = write_mapping(tmp_path, _base(entries))
    mapping = load_mapping_file(path, DEFAULTS, runtime=runtime, limits=limits)
    with pytest.raises(MappingFailure) as failure:
        mapping.apply({"s": "a b"}, META)
    assert failure.value.reason == "too_slow"
    assert str(failure.value).startswith("out5:")  # the sixth reading is past the deadline


def test_the_budget_is_checked_before_a_costly_filter(tmp_path: Path) -> None:
    runtime, limits = _ticking(0)
    data = _base([_copy("s", "out")]) | {"filter": 'matches_regex(s, "a.*")'}
    mapping = load_mapping_file(
        write_mapping(tmp_path, data), DEFAULTS, runtime=runtime, limits=limits
    )
    with pytest.raises(MappingFailure) as failure:
        mapping.apply({"s": "a b"}, META)
    assert failure.value.reason == "too_slow"
    assert str(failure.value).startswith("filter:")


def test_the_clock_is_read_only_by_mappings_that_check_the_budget(tmp_path: Path) -> None:
    readings: list[int] = []
    runtime = Runtime(now_ms=RUNTIME.now_ms, clock=lambda: readings.append(1) or 0.0)
    plain = [_copy("s", "out"), expression("lower(trim(s))", "low")]
    mapping = load_mapping_file(write_mapping(tmp_path, _base(plain)), DEFAULTS, runtime=runtime)
    assert mapping.apply({"s": " A "}, META).entity == {"out": " A ", "low": "a"}
    assert readings == []  # no costly field, no [*] loop: nothing is timed
    costly = _base([*plain, expression("split(s)", "parts")])
    path = write_mapping(tmp_path, costly, "costly.yaml")
    mapping = load_mapping_file(path, DEFAULTS, runtime=runtime)
    assert mapping.apply({"s": " A "}, META).entity == {"out": " A ", "low": "a", "parts": ["A"]}
    assert len(readings) == 2  # the deadline, then the check before split()


def test_user_agents_are_parsed_on_their_first_1024_characters() -> None:
    # What the user-agent cache keeps per entry is bounded, whatever the records hold.
    _agent_info.cache_clear()  # type: ignore[attr-defined]
    padded = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X)" + " " * 2000
    assert agent_info(padded + "x") == agent_info(padded + "y")
    assert _agent_info.cache_info().currsize == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("destination", "counts"),
    [(".".join(["a"] * 65), "65 steps and 0 [*]"), ("a" + "[*].b" * 9, "19 steps and 9 [*]")],
)
def test_destinations_past_the_depth_limits_are_load_errors(
    tmp_path: Path, destination: str, counts: str
) -> None:
    with pytest.raises(MappingLoadError) as error:
        mapping_of(tmp_path, [_copy("x", destination)])
    assert f"destination has {counts}; the limits are 64 and 8" in str(error.value)


def test_a_499_operand_expression_is_a_load_error(tmp_path: Path) -> None:
    source = " + ".join(["a"] * 499)
    with pytest.raises(MappingLoadError) as error:
        mapping_of(tmp_path, [expression(source)])
    assert "nests 499 levels deep; the limit is 48" in str(error.value)


@pytest.mark.parametrize("source", ["(" * 2000 + "a" + ")" * 2000, "-" * 3000 + "a", "!" * 4000])
def test_deeply_nested_syntax_is_a_load_error(tmp_path: Path, source: str) -> None:
    with pytest.raises(MappingLoadError, match="levels deep"):
        mapping_of(tmp_path, [expression(source)])


def test_the_deepest_allowed_expressions_compile(tmp_path: Path) -> None:
    # Generated Python nests a few parentheses per level: the limit keeps every valid
    # expression under CPython's 200.
    sources = [
        "lower(" * 47 + "a" + ")" * 47,
        "iif(" * 23 + "a" + ", b, c)" * 23,
        " - ".join(["a"] * 48),
        "decode(" * 47 + "a" + ', "x", "y")' * 47,
    ]
    mapping = mapping_of(tmp_path, [expression(s, f"out{i}") for i, s in enumerate(sources)])
    mapping.apply({"a": "A", "b": "B", "c": "C"}, META)


@pytest.mark.parametrize("container", ["object", "array"])
def test_values_nested_deeper_than_the_limit_are_field_errors(
    tmp_path: Path, container: str
) -> None:
    deep: object = "x"
    for _ in range(300):
        deep = {"a": deep} if container == "object" else [deep]
    mapping = mapping_of(tmp_path, [_copy("deep", "out"), _copy("k", "kept")])
    result = mapping.apply({"deep": deep, "k": 1}, META)
    assert result.entity == {"kept": 1}
    assert "nested more than 128 levels" in result.warnings[0]


def run_cli(*args: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEP_CONNECTOR_")}
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
        env=env,
        cwd=ROOT,
    )


def test_map_on_a_record_nested_300_deep_prints_a_clear_error(tmp_path: Path) -> None:
    path = write_mapping(tmp_path, _base([_copy("deep", "out")]))
    line = b'{"deep":' + b'{"a":' * 300 + b'"x"' + b"}" * 300 + b"}\n"
    result = run_cli("map", str(path), stdin=line)
    assert result.returncode == 1
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr
    assert "line 1: no destination field has a value" in stderr


def test_map_over_60k_character_hostile_strings_finishes(tmp_path: Path) -> None:
    hostile = ("a," * 30_000) + "1-" * 30_000
    lines = []
    for field in ("ua", "url", "email", "ts", "eventId"):
        record = orjson.loads((EXAMPLES / "web-commerce.input.jsonl").read_bytes().splitlines()[0])
        record["device"]["ua"] = hostile if field == "ua" else record["device"]["ua"]
        record["page"]["url"] = (
            "https://x.example/?" + hostile if field == "url" else record["page"]["url"]
        )
        record["user"]["email"] = hostile if field == "email" else record["user"]["email"]
        record["ts"] = hostile if field == "ts" else record["ts"]
        record["eventId"] = hostile if field == "eventId" else record["eventId"]
        lines.append(orjson.dumps(record))
    result = run_cli(
        "map", str(EXAMPLES / "web-commerce.yaml"), "--entity-only", stdin=b"\n".join(lines)
    )
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr
    # The hostile timestamp leaves the event without one: the example's XDM schema requires
    # it, so that record is reported (the worker would dead-letter it) and the others mapped.
    assert "line 4: invalid XDM: /timestamp: required field is missing (required)" in stderr
    assert len(result.stdout.splitlines()) == 4


@pytest.mark.integration  # a process holding 1,500 records of 400 KB: about a minute
def test_unique_400kb_urls_keep_memory_bounded() -> None:
    # Issue 11: the web-commerce example reached 1.2-1.7 GB after 1,500 such records.
    script = """
import sys
from pathlib import Path
import orjson
from connector.mapping import TargetDefaults, load_mapping_file
from connector.mapping.limits import MappingLimits
from connector.records import SourceRecord
example = Path("mappings/examples/web-commerce.yaml")
budget = MappingLimits(evaluation_budget_ms=600_000)  # memory is measured here, not time
mapping = load_mapping_file(example, TargetDefaults("i", "o"), limits=budget)
base = orjson.loads(Path("mappings/examples/web-commerce.input.jsonl").read_bytes().splitlines()[0])
for i in range(1500):
    filler = str(i) * (400_000 // len(str(i)))
    base["page"]["url"] = f"https://shop.example.com/p?utm_campaign={i}&q=" + filler
    base["device"]["ua"] = base["page"]["url"]
    mapping.apply(base, SourceRecord("web.commerce", 0, i, None, None, None))
status = Path("/proc/self/status").read_text()
print(int(status.split("VmHWM:")[1].split()[0]) // 1024)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=600, check=True, cwd=ROOT
    )
    # VmHWM, the peak of this process's own memory: ru_maxrss would carry over the RSS of the
    # forked pytest process (Linux keeps it across exec), hundreds of MB late in a full run.
    peak_mb = int(result.stdout.split()[-1])
    # About 50 MB (the interpreter and the mapping); Python's own urlsplit cache alone held
    # 100-300 MB of such URLs before the functions bypassed it.
    assert peak_mb < 120, peak_mb


def _base(entries: list[dict[str, str]]) -> dict[str, object]:
    from tests.mapping.support import base_mapping

    return base_mapping(entries)


def _copy(source: str, destination: str) -> dict[str, str]:
    return {"source": source, "destination": destination}
