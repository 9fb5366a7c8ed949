"""Backpressure: which partitions the worker has paused, and telling the consumer on every
assignment.

The worker pauses every assigned partition while more than the configured share of messages
or bytes is buffered or in flight (the API is slow or down), and keeps polling so that it
stays in the group; it resumes below half of it. librdkafka keeps a partition's pause flag
across a revoke and a later assignment, so each new assignment is explicitly paused or
resumed: a partition that comes back while the worker is not paused is fetched again.
"""

from __future__ import annotations

from collections.abc import Collection

from confluent_kafka import TopicPartition

from connector.logs import get_logger
from connector.metrics import Metrics
from connector.offsets import OffsetTracker, PartitionKey
from connector.settings import BatchingSettings
from connector.source.kafka import Consumer, restart_fetching

log = get_logger("flow")


class PauseControl:
    def __init__(
        self,
        consumer: Consumer,
        tracker: OffsetTracker,
        batching: BatchingSettings,
        metrics: Metrics,
    ) -> None:
        self._consumer = consumer
        self._tracker = tracker
        self._max_records = batching.max_buffered_records
        self._max_bytes = batching.max_buffered_bytes
        self._metrics = metrics
        self.backpressure = False
        self.paused: set[PartitionKey] = set()  # what this worker told the consumer to pause

    def update(self, records: int, size: int) -> None:
        """Pause or resume on the messages and bytes held (buffered, in flight, unconfirmed)."""
        if not self.backpressure and (records >= self._max_records or size >= self._max_bytes):
            self._switch(True)
        elif self.backpressure and (
            records < self._max_records // 2 and size < self._max_bytes // 2
        ):
            self._switch(False)

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """Set the pause flag of newly assigned partitions, whichever way it was left."""
        if self.backpressure:
            self._pause(partitions)
        else:
            self._resume(partitions)

    def forget(self, keys: Collection[PartitionKey]) -> None:
        """Revoked or lost partitions."""
        self.paused -= set(keys)
        self._metrics.paused_partitions.set(len(self.paused))

    def _switch(self, on: bool) -> None:
        assignment = self._consumer.assignment()
        self.backpressure = on
        if on:
            self._pause(assignment)
        else:
            self._resume(assignment)
            restart_fetching(self._consumer, assignment)
        log.info(
            "consumption paused" if on else "consumption resumed",
            extra={"fields": {"partitions": len(assignment)}},
        )

    def _pause(self, partitions: list[TopicPartition]) -> None:
        if partitions:
            self._consumer.pause(partitions)
        self.paused |= {(tp.topic, tp.partition) for tp in partitions}
        self._metrics.paused_partitions.set(len(self.paused))

    def _resume(self, partitions: list[TopicPartition]) -> None:
        if partitions:
            self._consumer.resume(partitions)
        for tp in partitions:
            key = (tp.topic, tp.partition)
            state = self._tracker.state(key)
            if key in self.paused and state is not None:
                # Right after a resume the client may deliver a range again (seen with
                # librdkafka): those records are on their way already.
                state.may_refetch = True
            self.paused.discard(key)
        self._metrics.paused_partitions.set(len(self.paused))
