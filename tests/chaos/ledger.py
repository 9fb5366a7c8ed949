"""The chaos suite's one invariant checker: what was produced, what became of it, and whether
any commit ever ran ahead of what was finished.

Pure bookkeeping, no I/O: the harness (tests/chaos/harness.py) feeds it produced records,
the emulator's accepted messages, dead letters and samples of the group's committed offsets.

A record is identified by (topic, partition, offset). The chaos mapping writes exactly that
into the entity's `_id` ("topic/partition/offset"); a dead letter carries it in its
aep.dlq.source.* headers.

"No commit ahead" is checked strictly, at the time of each sample: a committed offset c read
at wall-clock time t means every record of that partition below c was finished at or before
t. A record counts as finished at the emulator's receive time of a request that accepted it
(stamped before the emulator answers, so before the worker can know) or at the broker's
append time of its dead letter (the dead-letter topic uses LogAppendTime, stamped before the
producer is told). Both clocks are this machine's, so the check has no false alarms and no
tolerance window. It is a sampling check: a commit that runs ahead and is overtaken by the
work finishing before the next sample (every quarter second) goes unseen; one that stays
ahead is caught (tried: a worker committing 5 past its finished offsets fails in seconds).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Key = tuple[str, int, int]  # topic, partition, offset
Outcome = Literal["accept", "decode", "map", "validate", "api"]

#: Original record headers the chaos producer sets; dead letters must keep them first.
ORIGIN_HEADER = "chaos.origin"


@dataclass(frozen=True, slots=True)
class Expected:
    """A produced record and what must become of it."""

    outcome: Outcome  # "accept", or the dead-letter stage it must be rejected at
    n: int  # the record's sequence number, mapped to _acme.n when accepted
    key: bytes
    value: bytes  # kept for records bound for the dead-letter topic only (memory at 200k)


@dataclass(frozen=True, slots=True)
class Letter:
    """A dead letter read back from the dead-letter topic."""

    appended_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass
class Summary:
    """The figures of one scenario."""

    produced: int = 0
    accepted: int = 0  # distinct records accepted
    dead_lettered: int = 0  # distinct records dead-lettered
    lost: int = 0
    duplicates: int = 0  # acceptances and dead letters beyond the first of each record
    wrong_outcome: list[str] = field(default_factory=list)
    commit_ahead: list[str] = field(default_factory=list)
    commit_regressions: int = 0
    commit_samples: int = 0
    unknown: list[str] = field(default_factory=list)


class Ledger:
    """Thread-safe: the producer's delivery reports arrive on one thread, samples on another."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.produced: dict[Key, Expected] = {}
        self.accepted: dict[Key, list[int]] = {}  # receive times (ms), one per acceptance
        self.letters: dict[Key, list[Letter]] = {}
        self.problems: list[str] = []  # malformed or mismatching entities and letters
        self.commit_ahead: list[str] = []
        self.commit_regressions = 0
        self.commit_samples = 0
        self._verified: dict[tuple[str, int], int] = {}  # offsets below are finished
        self._last_commit: dict[tuple[str, int], int] = {}

    # ------------------------------------------------------------------ what happened

    def produced_record(self, key: Key, expected: Expected) -> None:
        with self._lock:
            self.produced[key] = expected

    def accept(self, line: Mapping[str, Any]) -> None:
        """One accepted message as the emulator records it ({receivedTimeMs, message, ...})."""
        entity = line["message"]["body"]["xdmEntity"]
        key = parse_id(entity.get("_id"))
        with self._lock:
            if key is None:
                self.problems.append(f"accepted entity without a chaos _id: {entity.get('_id')!r}")
                return
            self.accepted.setdefault(key, []).append(int(line["receivedTimeMs"]))
            expected = self.produced.get(key)
            n = entity.get("_acme", {}).get("n")
            if expected is not None and n != expected.n:
                self.problems.append(f"{key}: accepted with n={n!r}, produced n={expected.n}")

    def dead_letter(self, letter: Letter) -> None:
        topic = letter.header("aep.dlq.source.topic")
        partition = letter.header("aep.dlq.source.partition")
        offset = letter.header("aep.dlq.source.offset")
        with self._lock:
            if topic is None or partition is None or offset is None:
                self.problems.append(f"dead letter without source headers: {letter.headers!r}")
                return
            key = (topic.decode(), int(partition), int(offset))
            self.letters.setdefault(key, []).append(letter)

    # ------------------------------------------------------------------ commits

    def check_commits(self, topic: str, committed: Mapping[int, int], at_ms: int) -> list[str]:
        """Every record below each committed offset must have been finished by `at_ms`.
        Returns (and keeps) the violations of this sample."""
        found: list[str] = []
        with self._lock:
            self.commit_samples += 1
            for partition, position in committed.items():
                if position < 0:
                    continue  # nothing committed yet
                lane = (topic, partition)
                last = self._last_commit.get(lane)
                if last is not None and position < last:
                    self.commit_regressions += 1
                self._last_commit[lane] = position
                start = self._verified.get(lane, 0)
                for offset in range(start, position):
                    if not self._finished_by((topic, partition, offset), at_ms):
                        found.append(
                            f"{topic}/{partition}: committed {position} at {at_ms} ms but "
                            f"offset {offset} was not finished then"
                        )
                        break
                    self._verified[lane] = offset + 1
            self.commit_ahead.extend(found)
        return found

    def accepted_uncommitted(self, topic: str, committed: Mapping[int, int]) -> int:
        """Records of `topic` the API accepted at or above their partition's committed offset."""
        with self._lock:
            return sum(
                1
                for t, partition, offset in self.accepted
                if t == topic and offset >= committed.get(partition, 0)
            )

    def _finished_by(self, key: Key, at_ms: int) -> bool:
        times = self.accepted.get(key, [])
        if any(t <= at_ms for t in times):
            return True
        return any(letter.appended_ms <= at_ms for letter in self.letters.get(key, []))

    # ------------------------------------------------------------------ the end

    def summary(self) -> Summary:
        """Lost, duplicated and misrouted records, and what the commit checks found."""
        with self._lock:
            result = Summary(
                produced=len(self.produced),
                accepted=len(self.accepted),
                dead_lettered=len(self.letters),
                commit_ahead=list(self.commit_ahead),
                commit_regressions=self.commit_regressions,
                commit_samples=self.commit_samples,
                unknown=list(self.problems),
            )
            result.duplicates = sum(len(t) - 1 for t in self.accepted.values()) + sum(
                len(letters) - 1 for letters in self.letters.values()
            )
            for key in set(self.accepted) | set(self.letters):
                if key not in self.produced:
                    result.unknown.append(f"{key}: accepted or dead-lettered but never produced")
            for key, expected in self.produced.items():
                problem = self._outcome_problem(key, expected)
                if problem == "lost":
                    result.lost += 1
                elif problem is not None:
                    result.wrong_outcome.append(problem)
            return result

    def _outcome_problem(self, key: Key, expected: Expected) -> str | None:
        accepted = key in self.accepted
        letters = self.letters.get(key, [])
        if not accepted and not letters:
            return "lost"
        if expected.outcome == "accept":
            if letters:
                stage = letters[0].header("aep.dlq.stage")
                return f"{key}: a good record was dead-lettered (stage {stage!r})"
            return None
        if accepted:
            return f"{key}: a record for the dead-letter topic ({expected.outcome}) was accepted"
        for letter in letters:
            problem = _letter_problem(key, expected, letter)
            if problem is not None:
                return problem
        return None

    def outcomes(self) -> Counter[str]:
        """Produced records by expected outcome (for the printed figures)."""
        with self._lock:
            return Counter(e.outcome for e in self.produced.values())


def _letter_problem(key: Key, expected: Expected, letter: Letter) -> str | None:
    """A dead letter keeps key, value and headers byte for byte and says where it failed."""
    if letter.key != expected.key or letter.value != expected.value:
        return f"{key}: the dead letter's key or value differs from the record's"
    if not letter.headers or letter.headers[0] != (ORIGIN_HEADER, expected.key):
        return f"{key}: the dead letter lost the record's own headers: {letter.headers[:1]!r}"
    stage = letter.header("aep.dlq.stage")
    if stage != expected.outcome.encode():
        return f"{key}: dead-lettered at stage {stage!r}, expected {expected.outcome!r}"
    for name in ("aep.dlq.error.class", "aep.dlq.error.message", "aep.dlq.source.timestamp"):
        if not letter.header(name):
            return f"{key}: the dead letter has no {name} header"
    if expected.outcome == "api" and letter.header("aep.dlq.http.status") != b"400":
        return f"{key}: an API rejection without aep.dlq.http.status 400"
    return None


def parse_id(value: object) -> Key | None:
    """ "topic/partition/offset" → key (topic names have no slash)."""
    if not isinstance(value, str):
        return None
    parts = value.rsplit("/", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return parts[0], int(parts[1]), int(parts[2])


def format_ids(keys: Iterable[Key], limit: int = 5) -> str:
    shown = [f"{t}/{p}/{o}" for t, p, o in sorted(keys)[:limit]]
    return ", ".join(shown)
