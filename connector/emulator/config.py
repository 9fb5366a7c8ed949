"""The emulator's configuration: one YAML file validated by a pydantic model.

Every key is optional; an empty or absent file gives an emulator that accepts any connection id
without authentication, rate limits or faults. Unknown keys are errors, so a typo never silently
turns a check off. The fault plan and reject rules are also accepted at run time through the
control API, with the same models.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from connector.errors import InvalidInput

MAX_BODY_BYTES = 1_048_576
"""The documented request limit: 1 MB."""

MAX_STORED_BYTES = 268_435_456
"""Default memory for stored accepted requests: 256 MiB of request bodies."""

TOKEN_LIFETIME_S = 86_399
"""IMS's documented `expires_in` for server-to-server tokens."""

CONTROL_TOKEN_ENV = "AEP_EMULATOR_CONTROL_TOKEN"  # noqa: S105 (the variable's name, not a secret)
"""The control token from the environment, for containers that run the emulator without a file."""

RejectionShape = Literal["statusCode", "status", "status_with_xaction"]

_SEQUENCE_STEP = re.compile(r"^(ok|500|503|429|drop|accept_drop|stall|delay:\d+)$")

Probability = Annotated[float, Field(ge=0, le=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RateLimitConfig(_Model):
    """Token buckets for one connection; a request over either budget gets a 429."""

    requests_per_s: float | None = Field(default=None, gt=0)
    messages_per_s: float | None = Field(default=None, gt=0)
    requests_burst: float | None = Field(
        default=None, gt=0, description="Request bucket size; default one second's worth (≥ 1)."
    )
    messages_burst: float | None = Field(
        default=None, gt=0, description="Message bucket size; default one second's worth (≥ 1)."
    )
    retry_after_s: int | None = Field(
        default=None, ge=0, description="Retry-After on a 429; none by default, as documented."
    )


class DataflowConfig(_Model):
    """One dataflow of an HTTP API source connection: where its raw payloads go."""

    dataset: str | None = Field(
        default=None,
        min_length=1,
        description="The dataflow's target dataset, shown with its stored raw payloads.",
    )


class ConnectionConfig(_Model):
    """One streaming connection (inlet)."""

    authentication: bool = False
    datasets: list[str] | None = Field(
        default=None, description="Dataset ids this connection accepts; any when absent."
    )
    rate_limit: RateLimitConfig | None = None
    require_flow_id: bool = Field(
        default=False, description="Dataflow-based inlets require header.flowId."
    )
    dataflows: dict[str, DataflowConfig] | None = Field(
        default=None,
        description="Flow id -> dataflow: the connection is an HTTP API source inlet that "
        "accepts raw (non-XDM) payloads with an x-adobe-flow-id header naming one of these.",
    )

    @model_validator(mode="after")
    def _check(self) -> ConnectionConfig:
        if self.dataflows is not None and not self.dataflows:
            raise ValueError("dataflows: name at least one flow id (or leave the key out)")
        if self.dataflows is not None and any(not f.strip() for f in self.dataflows):
            raise ValueError("dataflows: a flow id must not be empty")
        return self


class Credential(_Model):
    """A client allowed to get tokens from POST /ims/token/v3."""

    client_id: str = Field(min_length=1)
    client_secret: SecretStr


class RejectRule(_Model):
    """Reject every message whose value at `pointer` equals `equals` (for partial-failure tests)."""

    pointer: str = Field(
        pattern=r"^(/.*)?$", description="JSON pointer into the message, e.g. /body/xdmEntity/_id."
    )
    equals: Any = Field(description="The JSON value that triggers the rejection.")
    status: int = Field(default=400, ge=400, le=599)
    message: str | None = Field(
        default=None, description="Rejection message; a default names the rule."
    )


class FaultPlan(_Model):
    """Injected failures of the collection endpoints, deterministic for a given seed.

    A non-empty `sequence` is consumed one step per request first; afterwards (or without one)
    each request draws once from the seeded generator against the probabilities, in the order
    drop, 500, 503, 429, accept_drop. `stall` holds every request until the plan is cleared or
    replaced. `accept_drop` serves the request (its accepted messages are stored) and then closes
    the connection instead of answering, as a lost answer does in the real world.
    """

    seed: int | None = Field(default=None, description="Overrides the top-level seed.")
    p500: Probability = 0.0
    p503: Probability = 0.0
    p429: Probability = 0.0
    p_drop: Probability = 0.0
    p_accept_drop: Probability = 0.0
    retry_after_s: int = Field(default=1, ge=0, description="Retry-After on an injected 503.")
    retry_after_429_s: int | None = Field(
        default=None, ge=0, description="Retry-After on an injected 429; none by default."
    )
    latency_ms: int = Field(default=0, ge=0, description="Added before every answer.")
    stall: bool = False
    sequence: list[str] = Field(
        default_factory=list,
        description='Steps: "ok", "500", "503", "429", "drop", "accept_drop", "stall", '
        '"delay:<ms>".',
    )
    include_token_endpoint: bool = Field(
        default=False, description="Apply the plan to POST /ims/token/v3 as well."
    )

    @model_validator(mode="after")
    def _check(self) -> FaultPlan:
        total = self.p500 + self.p503 + self.p429 + self.p_drop + self.p_accept_drop
        if total > 1:
            raise ValueError(
                f"p500 + p503 + p429 + p_drop + p_accept_drop must be at most 1, got {total:g}"
            )
        for index, step in enumerate(self.sequence):
            if not _SEQUENCE_STEP.match(step):
                raise ValueError(
                    f"sequence[{index}]: unknown step {step!r} (expected ok, 500, 503, 429, "
                    "drop, accept_drop, stall or delay:<ms>)"
                )
        return self


class EmulatorConfig(_Model):
    """The whole emulator configuration (see docs/emulator.md)."""

    ims_org_id: str | None = Field(
        default=None, description="When set, header.imsOrgId must equal it."
    )
    strict: bool = Field(default=False, description="Require header.schemaRef.id.")
    rejection_shape: RejectionShape = "statusCode"
    max_body_bytes: int = Field(default=MAX_BODY_BYTES, gt=0)
    require_sandbox_name: bool = Field(
        default=True, description="Answer 400 when x-sandbox-name is missing."
    )
    sync_validation: Literal["supported", "unsupported"] = Field(
        default="supported", description="`unsupported` answers 501, as some regions do."
    )
    sync_validation_per_min: int | None = Field(
        default=60, ge=1, description="Sync-validation requests per minute per connection."
    )
    connections: dict[str, ConnectionConfig] = Field(default_factory=dict)
    credentials: list[Credential] = Field(default_factory=list)
    token_lifetime_s: int = Field(default=TOKEN_LIFETIME_S, ge=1)
    schemas: dict[str, Path] = Field(
        default_factory=dict, description="Schema id → JSON Schema file for entity validation."
    )
    reject: list[RejectRule] = Field(default_factory=list)
    faults: FaultPlan | None = None
    seed: int = 0
    record_file: Path | None = Field(
        default=None, description="Append accepted messages to this JSONL file."
    )
    max_stored_messages: int = Field(
        default=500_000, ge=0, description="Accepted messages kept in memory; oldest go first."
    )
    max_stored_bytes: int = Field(
        default=MAX_STORED_BYTES,
        ge=0,
        description="Bytes of accepted request bodies kept in memory; oldest go first.",
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A request's line and headers must arrive within this many seconds of its "
        "first byte (or of the connection opening); otherwise the connection is closed.",
    )
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="A request body must arrive whole within this many seconds of being read; "
        "otherwise the answer is 408 and the connection is closed.",
    )
    idle_timeout_s: float = Field(
        default=60.0, gt=0, description="An idle keep-alive connection is closed after this."
    )
    control_token: SecretStr | None = Field(
        default=None,
        description="Lets non-loopback clients use the control API when they send it in the "
        "X-Emulator-Token header; without it only loopback clients may.",
    )

    @field_validator("control_token")
    @classmethod
    def _check_token(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None and not token.get_secret_value().strip():
            raise ValueError("must not be empty")
        return token


class EmulatorConfigError(InvalidInput):
    """The configuration is invalid; `problems` lists every problem, one line each."""


def describe_errors(exc: ValidationError) -> list[str]:
    """One line per problem: `dotted.key: message`."""
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append(f"{key}: {message}")
    return problems


def parse_config(data: Any, base_dir: Path = Path()) -> EmulatorConfig:
    """Validate plain data; relative schema and record paths are resolved against `base_dir`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise EmulatorConfigError(["(top level): must be a mapping of keys"])
    try:
        config = EmulatorConfig.model_validate(data)
    except ValidationError as exc:
        raise EmulatorConfigError(describe_errors(exc)) from None
    schemas = {sid: base_dir / path for sid, path in config.schemas.items()}
    record_file = base_dir / config.record_file if config.record_file else None
    return config.model_copy(update={"schemas": schemas, "record_file": record_file})


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> EmulatorConfig:
    """Read and validate the YAML file (no file means the defaults); a control token in the
    environment applies when the file sets none."""
    config = _load_file(path)
    token = (os.environ if environ is None else environ).get(CONTROL_TOKEN_ENV, "").strip()
    if token and config.control_token is None:
        config = config.model_copy(update={"control_token": SecretStr(token)})
    return config


def _load_file(path: Path | None) -> EmulatorConfig:
    if path is None:
        return EmulatorConfig()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EmulatorConfigError([f"config file {path}: cannot be read: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise EmulatorConfigError([f"config file {path}: not valid YAML: {exc}"]) from None
    try:
        return parse_config(data, path.parent)
    except EmulatorConfigError as exc:
        raise EmulatorConfigError([f"config file {path}: {p}" for p in exc.problems]) from None
