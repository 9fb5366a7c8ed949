"""Accepted messages and counters, for the inspection API and the optional JSONL record file.

Each accepted request is kept as its raw body plus the positions of its accepted messages:
storing bytes instead of parsed objects keeps memory near the wire size (about 1 KB a message
rather than several), and the body is parsed again only when someone reads the messages.
The oldest requests are evicted once more than `max_messages` messages or `max_bytes` bytes of
request bodies are stored, so neither many small nor a few large requests can exhaust memory.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from connector.emulator import jsontext


@dataclass(frozen=True, slots=True)
class AcceptedRequest:
    """One request with at least one accepted message."""

    connection_id: str
    received_ms: int
    body: bytes
    #: The batch id for a batch request (message i's xactionId is `<batch id>:<i>`), or the
    #: xactionId of a single-message request.
    request_id: str
    is_batch: bool
    #: (index in the batch, datasetId) of each accepted message; index 0 for a single message.
    #: A raw payload's dataset is its dataflow's, when configured.
    accepted: Sequence[tuple[int, str | None]]
    #: Set for a raw (non-XDM) payload of an HTTP API source dataflow: the x-adobe-flow-id.
    flow_id: str | None = None

    def xaction_id(self, index: int) -> str:
        return f"{self.request_id}:{index}" if self.is_batch else self.request_id


def inspection_line(
    request: AcceptedRequest, index: int, dataset_id: str | None, message: Any
) -> dict[str, Any]:
    """The record of one accepted message, as served by GET /__emulator/messages."""
    line = {
        "connectionId": request.connection_id,
        "xactionId": request.xaction_id(index),
        "receivedTimeMs": request.received_ms,
        "datasetId": dataset_id,
        "message": message,
    }
    if request.flow_id is not None:
        line["flowId"] = request.flow_id
        line["raw"] = True
    return line


class MessageStore:
    """Accepted requests in arrival order, bounded by a message count and by body bytes."""

    def __init__(self, max_messages: int, max_bytes: int, record_file: Path | None = None) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._requests: deque[AcceptedRequest] = deque()
        self.stored = 0
        self.stored_bytes = 0
        self.evicted = 0
        self._record: IO[bytes] | None = record_file.open("ab") if record_file else None

    def add(self, request: AcceptedRequest, messages: Sequence[Any]) -> None:
        """Keep `request`; `messages` are its parsed messages (all of them, by batch index)."""
        if self._record is not None:
            for index, dataset_id in request.accepted:
                line = inspection_line(request, index, dataset_id, messages[index])
                self._record.write(jsontext.dumps(line) + b"\n")
            self._record.flush()
        self._requests.append(request)
        self.stored += len(request.accepted)
        self.stored_bytes += len(request.body)
        while self._requests and (
            self.stored > self.max_messages or self.stored_bytes > self.max_bytes
        ):
            oldest = self._requests.popleft()
            self.stored -= len(oldest.accepted)
            self.stored_bytes -= len(oldest.body)
            self.evicted += len(oldest.accepted)

    def lines(
        self,
        connection_id: str | None = None,
        dataset_id: str | None = None,
        flow_id: str | None = None,
    ) -> Iterator[bytes]:
        """Each stored message as one JSON line, oldest first, optionally filtered."""
        for request in list(self._requests):  # a snapshot: the store may grow while we stream
            if connection_id is not None and request.connection_id != connection_id:
                continue
            if flow_id is not None and request.flow_id != flow_id:
                continue
            wanted = [
                (index, dataset)
                for index, dataset in request.accepted
                if dataset_id is None or dataset == dataset_id
            ]
            if not wanted:
                continue
            document = orjson.loads(request.body)
            messages = document["messages"] if request.is_batch else [document]
            for index, dataset in wanted:
                line = inspection_line(request, index, dataset, messages[index])
                yield jsontext.dumps(line) + b"\n"

    def clear(self) -> None:
        self._requests.clear()
        self.stored = 0
        self.stored_bytes = 0
        self.evicted = 0

    def close(self) -> None:
        if self._record is not None:
            self._record.close()
            self._record = None


@dataclass
class Stats:
    """Counters for GET /__emulator/stats. Status codes are keys as strings, like JSON needs."""

    requests_by_status: Counter[str] = field(default_factory=Counter)
    requests_dropped: int = 0
    messages_accepted: int = 0
    messages_rejected: int = 0
    bytes_received: int = 0
    accepted_by_connection: Counter[str] = field(default_factory=Counter)
    accepted_by_dataset: Counter[str] = field(default_factory=Counter)
    accepted_by_flow: Counter[str] = field(default_factory=Counter)
    faults_injected: Counter[str] = field(default_factory=Counter)
    token_requests_by_status: Counter[str] = field(default_factory=Counter)
    tokens_issued: int = 0
    header_timeouts: int = 0
    body_timeouts: int = 0
    control_refused: int = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests_by_status": dict(self.requests_by_status),
            "requests_total": sum(self.requests_by_status.values()) + self.requests_dropped,
            "requests_dropped": self.requests_dropped,
            "messages_accepted": self.messages_accepted,
            "messages_rejected": self.messages_rejected,
            "bytes_received": self.bytes_received,
            "accepted_by_connection": dict(self.accepted_by_connection),
            "accepted_by_dataset": dict(self.accepted_by_dataset),
            "accepted_by_flow": dict(self.accepted_by_flow),
            "faults_injected": dict(self.faults_injected),
            "token_requests_by_status": dict(self.token_requests_by_status),
            "tokens_issued": self.tokens_issued,
            "header_timeouts": self.header_timeouts,
            "body_timeouts": self.body_timeouts,
            "control_refused": self.control_refused,
        }
