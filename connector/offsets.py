"""Which offsets may be committed: pure logic, no I/O.

A record is *finished* when every message made from it has been accepted by the API or
confirmed in the dead-letter topic. Per partition, the commit position is one past the highest
offset below which every consumed record is finished; it never passes an unfinished record,
whatever order the results arrive in. Offsets are tracked in consumption order, so gaps in the
log (compaction, transaction markers) need no special care.

A `PartitionState` exists for one assignment of a partition. When the partition is revoked or
lost its state is deactivated, and results that arrive later for it change nothing: the new
owner (or this worker, if the partition comes back) starts from the committed offset.
"""

from __future__ import annotations

from collections import deque

#: (topic, partition): a partition's identity in the tracker (not confluent-kafka's type).
PartitionKey = tuple[str, int]


class PartitionState:
    """Finished and unfinished offsets of one assignment of one partition."""

    __slots__ = (
        "_order",
        "_remaining",
        "active",
        "committed",
        "key",
        "last_added",
        "may_refetch",
        "position",
    )

    def __init__(self, key: PartitionKey) -> None:
        self.key = key
        self.active = True
        self._order: deque[int] = deque()  # consumed, not yet below the position
        self._remaining: dict[int, int] = {}  # offset -> messages of it not yet finished
        self.position: int | None = None  # next offset to commit (last finished + 1)
        self.committed: int | None = None  # last position handed to a commit
        self.last_added: int = -1
        #: Resumed since the last record was added: the client may deliver a range again.
        self.may_refetch = False

    def add(self, offset: int, parts: int) -> None:
        """Track a consumed record that will be finished by `parts` results (0: finished now)."""
        if offset <= self.last_added:
            raise ValueError(f"{self.key}: offset {offset} after {self.last_added}")
        self.last_added = offset
        self._order.append(offset)
        if parts > 0:
            self._remaining[offset] = parts
        else:
            self._advance()

    def finish(self, offset: int) -> None:
        """One message of the record at `offset` is done. Ignored once the state is inactive."""
        if not self.active:
            return
        left = self._remaining.get(offset)
        if left is None:
            raise ValueError(f"{self.key}: offset {offset} finished more often than expected")
        if left > 1:
            self._remaining[offset] = left - 1
            return
        del self._remaining[offset]
        if self._order and self._order[0] == offset:
            self._advance()

    def finish_many(self, offsets: list[int]) -> None:
        """`finish` for each of `offsets` in turn (the messages of one accepted request): one
        call, and one advance of the position, for the lot."""
        if not self.active:
            return
        remaining = self._remaining
        for offset in offsets:
            left = remaining.get(offset)
            if left is None:
                raise ValueError(f"{self.key}: offset {offset} finished more often than expected")
            if left > 1:
                remaining[offset] = left - 1
            else:
                del remaining[offset]
        if self._order and self._order[0] not in remaining:
            self._advance()

    def _advance(self) -> None:
        order, remaining = self._order, self._remaining
        while order and order[0] not in remaining:
            self.position = order.popleft() + 1

    @property
    def pending(self) -> int:
        """Records consumed but not finished."""
        return len(self._remaining)

    def skip_to(self, position: int) -> None:
        """The consumer's position passed offsets that are no records (transaction markers):
        with nothing unfinished, the commit position may follow it."""
        if not self._remaining and position > self.last_added:
            self.last_added = position - 1
            self.position = position

    def first_unfinished(self) -> int:
        """The lowest offset not yet finished (one past the last added when all are)."""
        return self._order[0] if self._order else self.last_added + 1

    def uncommitted_position(self) -> int | None:
        """The position if it moved since the last commit, else None."""
        if self.position is not None and self.position != self.committed:
            return self.position
        return None


class OffsetTracker:
    """The partition states of the current assignment."""

    def __init__(self) -> None:
        self._states: dict[PartitionKey, PartitionState] = {}

    def assign(self, key: PartitionKey) -> PartitionState:
        state = PartitionState(key)
        old = self._states.get(key)
        if old is not None:
            old.active = False
        self._states[key] = state
        return state

    def state(self, key: PartitionKey) -> PartitionState | None:
        return self._states.get(key)

    def release(self, key: PartitionKey) -> PartitionState | None:
        """Forget a revoked or lost partition; late results for it are ignored from now on."""
        state = self._states.pop(key, None)
        if state is not None:
            state.active = False
        return state

    def keys(self) -> list[PartitionKey]:
        return list(self._states)

    def states(self) -> list[PartitionState]:
        return list(self._states.values())

    def commit_positions(self, keys: list[PartitionKey] | None = None) -> dict[PartitionKey, int]:
        """Positions that moved since the last commit (for all partitions, or for `keys`)."""
        chosen = (
            self._states
            if keys is None
            else {k: self._states[k] for k in keys if k in self._states}
        )
        result: dict[PartitionKey, int] = {}
        for key, state in chosen.items():
            position = state.uncommitted_position()
            if position is not None:
                result[key] = position
        return result

    def mark_committed(self, positions: dict[PartitionKey, int]) -> None:
        for key, position in positions.items():
            state = self._states.get(key)
            if state is not None:
                state.committed = position

    @property
    def pending(self) -> int:
        return sum(state.pending for state in self._states.values())
