"""The connector's error tree, and the dead-letter value a failed record leaves the path with.

Every failure is mapped into the tree in one place (the layer that meets the library or the
API), and the worker decides by class alone what happens next.

    ConnectorError
    ├── RetryableError          transient: back off and try again; never dead-letter, never drop
    │   └── Unacknowledged      a 2xx without one result per message: nothing is acknowledged
    ├── PoisonError             this record is bad: it leaves the path as a DeadLetter
    ├── SplitRequest            the request is too large: split the batch in halves, retry them
    ├── HaltError               the deployment is wrong: stop consuming, commit nothing unfinished
    │   └── AuthenticationError 401/403: renew the token once, then halt
    ├── InvalidInput            files or settings a user wrote, every problem listed: exit 2
    │   ├── ConfigError         the settings (connector.settings)
    │   ├── MappingLoadError    mapping files (connector.mapping.errors)
    │   └── EmulatorConfigError the emulator's configuration (connector.emulator.config)
    ├── DocumentError           a YAML or JSON file that cannot be read at all (mapping.model)
    ├── TracingUnavailable      tracing enabled but the SDK or an exporter is missing (tracing)
    ├── SourceError             a piece of mapping text at a line and column (mapping.errors)
    ├── ExpressionError         a field's expression failed for one record (mapping.errors)
    └── MappingFailure          one record could not be mapped (strict, budget): a dead letter

Where errors of the layers below are translated into this tree:
- connector/source/decode.py: orjson and fastavro errors → PoisonError (stage decode); schema
  registry transport errors → RetryableError, unknown or unusable schemas → PoisonError.
- connector/source/kafka.py: librdkafka message errors → HaltError (fatal, authentication) or
  a logged warning (transient consumer errors the client retries itself).
- connector/delivery/outcome.py: HTTP status codes and 207 entries → RetryableError,
  SplitRequest, HaltError, AuthenticationError, Unacknowledged, or a DeadLetter per message.
- connector/delivery/sender.py: httpx transport errors → RetryableError.
- connector/delivery/auth.py: token endpoint answers → RetryableError or HaltError.
- connector/deadletter.py: producer delivery failures and a queue that stays full → HaltError.
- connector/process.py: MappingFailure, envelope errors, oversized messages → DeadLetter.

Stages a record can fail in (the dead-letter `stage` header): decode, map, validate, api.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Stage = Literal["decode", "map", "validate", "api"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Why one record (or one message made from it) goes to the dead-letter topic.

    `error_class` is a short fixed code: the metric label and the `error.class` header.
    `message` may quote record values, so it is logged only at DEBUG.
    """

    stage: Stage
    error_class: str
    message: str
    status: int | None = None
    api_message: str | None = None
    mapping: str | None = None
    attempts: int = 0
    #: Extra (name, value) headers of this stage, e.g. the XDM pointer and keyword.
    details: tuple[tuple[str, str], ...] = ()


class ConnectorError(Exception):
    """Root of every error the connector raises on purpose."""


class RetryableError(ConnectorError):
    """A transient failure: timeouts, connection errors, 408, 429, 5xx except 501."""

    def __init__(
        self, message: str, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class Unacknowledged(RetryableError):
    """A success status without one result per message (a proxy, a wrong base URL): no message
    is acknowledged. Retried like a transient failure; halts after a bound."""


class PoisonError(ConnectorError):
    """One record cannot be delivered as it is; raised by lower layers, it becomes a DeadLetter."""

    def __init__(
        self,
        stage: Stage,
        message: str,
        reason: str = "invalid",
        status: int | None = None,
        api_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.letter = DeadLetter(stage, reason, message, status, api_message)

    @property
    def stage(self) -> Stage:
        return self.letter.stage

    @property
    def reason(self) -> str:
        return self.letter.error_class


class SplitRequest(ConnectorError):
    """413 on a multi-message request: the halves are retried separately."""


class HaltError(ConnectorError):
    """Persistent 401/403, unknown inlet, 501, or a tripped dead-letter circuit breaker.

    The worker stops consuming, reports unhealthy, and exits non-zero without committing
    anything that was not finished; the orchestrator restarts it once the cause is fixed.
    """


class InvalidInput(ConnectorError):
    """Files or settings a user wrote are invalid; `problems` lists every one, one line each,
    so that a single run shows every mistake."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class AuthenticationError(HaltError):
    """401/403 from the API. The sender renews the token and tries once more before halting."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
