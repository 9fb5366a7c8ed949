"""The broker restart scenario needs a broker of its own (scripts/local-kafka, its own state
directory). Starting a JVM broker takes 10-30 s on a loaded 2-core machine, so it starts in the
background as soon as collection shows that scenario will run, and the scenario runs after the
other chaos scenarios: they wait on timeouts and outages meanwhile, not on the CPU.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

import pytest

from tests.support.kafka import (
    ServiceUnavailable,
    start_local_service,
    stop_local_service,
    wait_for_broker,
)

#: The fixture of the scenario that needs the broker (tests/chaos/test_broker_restart.py).
OWN_BROKER = "own_broker"


class BackgroundBroker:
    """A broker started by scripts/local-kafka in a thread; wait() returns its state directory."""

    def __init__(self) -> None:
        self.state_dir = Path(tempfile.mkdtemp(prefix="chaos-own-broker-"))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._start, name="chaos-broker", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            wait_for_broker(start_local_service("kafka", self.state_dir))
        except BaseException as exc:  # reported by wait(), in the test
            self._error = exc

    def wait(self) -> Path:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.state_dir

    def stop(self) -> None:
        self._thread.join()
        stop_local_service("kafka", self.state_dir)
        shutil.rmtree(self.state_dir, ignore_errors=True)


_broker: BackgroundBroker | None = None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The own-broker scenario goes right after the other chaos scenarios (its broker starts
    meanwhile); everything else keeps its order."""
    wanting = [item for item in items if OWN_BROKER in getattr(item, "fixturenames", ())]
    if not wanting:
        return
    rest = [item for item in items if item not in wanting]
    chaos = [i for i, item in enumerate(rest) if item.get_closest_marker("chaos")]
    at = chaos[-1] + 1 if chaos else len(rest)
    items[:] = rest[:at] + wanting + rest[at:]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the broker as soon as the session is known to run the scenario."""
    global _broker
    wanted = any(OWN_BROKER in getattr(item, "fixturenames", ()) for item in session.items)
    if wanted and _broker is None:
        _broker = BackgroundBroker()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _broker is not None:
        _broker.stop()


@pytest.fixture
def own_broker() -> Path:
    """The state directory of a running broker for this test alone (stopped at the end of the
    session; the test may stop and start it: it keeps its ports and data)."""
    global _broker
    if _broker is None:
        _broker = BackgroundBroker()
    try:
        return _broker.wait()
    except ServiceUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
