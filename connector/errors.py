"""The connector's error tree. Every failure is mapped into it in one place (the layer that
meets the library or the API), and the worker decides by class alone what happens next.

    ConnectorError
    ├── RetryableError      transient: back off and try again; never dead-letter, never drop
    ├── PoisonError         this record is bad: dead-letter it with the stage and the reason
    ├── SplitRequest        the request is too large: split the batch in halves and retry them
    └── HaltError           the deployment is wrong: stop consuming, commit nothing unfinished

Stages a record can fail in (the dead-letter `stage` header): decode, map, validate, api.
"""

from __future__ import annotations

from typing import Literal

Stage = Literal["decode", "map", "validate", "api"]


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


class PoisonError(ConnectorError):
    """One record cannot be delivered as it is; it goes to the dead-letter topic."""

    def __init__(
        self,
        stage: Stage,
        message: str,
        reason: str = "invalid",
        status: int | None = None,
        api_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.stage: Stage = stage
        self.reason = reason  # a short, fixed code: the metric label and the error.class header
        self.status = status
        self.api_message = api_message


class SplitRequest(ConnectorError):
    """413 on a multi-message request: the halves are retried separately."""


class HaltError(ConnectorError):
    """Persistent 401/403, unknown inlet, 501, or a tripped dead-letter circuit breaker.

    The worker stops consuming, reports unhealthy, and exits non-zero without committing
    anything that was not finished; the orchestrator restarts it once the cause is fixed.
    """


class AuthenticationError(HaltError):
    """401/403 from the API. The sender renews the token and tries once more before halting."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
