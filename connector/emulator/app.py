"""The emulator's HTTP server: the streaming collection endpoints, the token endpoint and the
control API under /__emulator/.

A collection request goes through these steps, and the first that fails answers:
injected fault → connection known (404) → bearer token (401/403) → Content-Type (415) →
x-sandbox-name (400) → x-adobe-flow-id on a dataflow inlet (400) → body size (413) → body
timeout (408) → syncValidation parameter (400/501) → JSON (400) → batch shape (400) → rate
limits (429) → per-message checks and reject rules → 200 or 207. On a dataflow inlet a single
message with an x-adobe-flow-id header is a raw payload: it skips the XDM checks.
Everything after the body is read runs without awaiting, so a request's effect on the emulator's
state is atomic. The control API answers loopback clients, and others only with the configured
control token. Payloads and secrets are never logged.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jsonschema
import orjson
from aiohttp import web
from jsonschema.protocols import Validator
from pydantic import TypeAdapter, ValidationError

from connector.emulator.auth import TokenIssuer, TokenState
from connector.emulator.checks import (
    EnvelopeRules,
    Violation,
    build_validator,
    check_message,
    compile_reject_rules,
    describe,
    matching_reject_rule,
)
from connector.emulator.clock import AdjustableClock
from connector.emulator.config import (
    CONTROL_TOKEN_ENV,
    ConnectionConfig,
    EmulatorConfig,
    EmulatorConfigError,
    FaultPlan,
    RejectRule,
    describe_errors,
)
from connector.emulator.faults import Endpoint, FaultAction, FaultInjector
from connector.emulator.ratelimit import ConnectionLimiter, TokenBucket
from connector.emulator.responses import JSON, error_response, json_response
from connector.emulator.serving import Handler, guard_middleware, read_body
from connector.emulator.serving import serve as serve_guarded
from connector.emulator.store import AcceptedRequest, MessageStore, Stats
from connector.xdm import SchemaLoadError, load_schema

SMILE = "application/x-jackson-smile"
FORM = "application/x-www-form-urlencoded"
CONTROL = "/__emulator"
CONTROL_TOKEN_HEADER = "X-Emulator-Token"  # noqa: S105 (a header name, not a secret)
FLOW_ID_HEADER = "x-adobe-flow-id"
MAX_CONTROL_BODY_BYTES = 1_048_576

_reject_rules_adapter = TypeAdapter(list[RejectRule])


def load_validators(schemas: Mapping[str, Path]) -> dict[str, Validator]:
    """One JSON Schema validator per configured schema id; every bad file is reported.

    Files are read by the connector's own loader of exported XDM schemas (connector.xdm), so
    the emulator accepts exactly the schema files that mappings' `validate.schema` accept."""
    validators: dict[str, Validator] = {}
    problems: list[str] = []
    for schema_id, path in schemas.items():
        where = f"schemas.{schema_id}"
        try:
            schema = load_schema(path)
            validators[schema_id] = build_validator(schema.document)
        except SchemaLoadError as exc:
            problems.extend(f"{where}: {problem}" for problem in exc.problems)
        except jsonschema.SchemaError as exc:
            problems.append(f"{where}: {path}: not a valid JSON Schema: {exc.message}")
    if problems:
        raise EmulatorConfigError(problems)
    return validators


def is_loopback(peer: object) -> bool:
    """Whether a transport's peername is a loopback address (IPv4, IPv6 or IPv4-mapped)."""
    if not isinstance(peer, tuple) or not peer or not isinstance(peer[0], str):
        return False
    try:
        address = ipaddress.ip_address(peer[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def parse_json(body: bytes) -> Any:
    """The parsed body, or a 400 response saying why it is not JSON the emulator can take."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            return error_response(
                400, "body: nested more than 1024 levels deep (the JSON parser's limit)"
            )
        return error_response(400, f"body: not valid JSON: {exc}")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Emulator:
    """The emulator's state and request handlers."""

    def __init__(self, config: EmulatorConfig, clock: AdjustableClock | None = None) -> None:
        self.config = config
        self.clock = clock or AdjustableClock()
        self.tokens = TokenIssuer(config.credentials, config.token_lifetime_s, self.clock.now)
        validators = load_validators(config.schemas) or None
        self._open_rules = EnvelopeRules(config.ims_org_id, config.strict, validators=validators)
        self._rules = {
            connection_id: EnvelopeRules(
                config.ims_org_id,
                config.strict,
                datasets=frozenset(c.datasets) if c.datasets is not None else None,
                require_flow_id=c.require_flow_id,
                flow_ids=frozenset(c.dataflows) if c.dataflows is not None else None,
                validators=validators,
            )
            for connection_id, c in config.connections.items()
        }
        try:
            self.store = MessageStore(
                config.max_stored_messages, config.max_stored_bytes, config.record_file
            )
        except OSError as exc:
            raise EmulatorConfigError(
                [f"record_file: {config.record_file}: cannot be opened: {exc.strerror}"]
            ) from None
        self.stats = Stats()
        self.faults = FaultInjector(config.seed, config.faults)
        self.reject_rules = compile_reject_rules(config.reject)
        self._released = asyncio.Event()
        self._stalled = 0
        self._limiters: dict[str, ConnectionLimiter] = {}
        self._sync_limiters: dict[str, TokenBucket] = {}
        self._requests_seen = 0
        self._reset_limiters()

    # --- the streaming API ----------------------------------------------------------------

    async def collect_one(self, request: web.Request) -> web.StreamResponse:
        """POST /collection/{connection_id}: one message."""
        return await self._collection_request(request, batch=False)

    async def collect_batch(self, request: web.Request) -> web.StreamResponse:
        """POST /collection/batch/{connection_id}: {"messages": [...]}."""
        return await self._collection_request(request, batch=True)

    async def _collection_request(self, request: web.Request, batch: bool) -> web.StreamResponse:
        action = self.faults.next_action("collection")
        response = await self._apply_fault(request, action)
        if response is None:
            response = await self._collect(request, batch)
        if action.kind == "accept_drop":
            self.stats.requests_dropped += 1
            return _drop_answer(request)
        if action.kind != "drop":
            self.stats.requests_by_status[str(response.status)] += 1
        return response

    async def _collect(self, request: web.Request, batch: bool) -> web.Response:
        config = self.config
        connection_id = request.match_info["connection_id"]
        connection = config.connections.get(connection_id)
        if config.connections and connection is None:
            known = ", ".join(sorted(config.connections))
            return error_response(
                404, f"connection id {connection_id!r} is not known (configured: {known})"
            )
        if connection is not None and connection.authentication:
            refused = self._check_bearer(request, connection_id)
            if refused is not None:
                return refused
        if request.content_type != JSON:
            return self._unsupported_media_type(request.content_type)
        if config.require_sandbox_name and not request.headers.get("x-sandbox-name"):
            return error_response(400, "header x-sandbox-name: required but missing")
        flow_id = request.headers.get(FLOW_ID_HEADER, "").strip() or None
        dataflows = connection.dataflows if connection is not None else None
        if dataflows is not None and flow_id is not None and flow_id not in dataflows:
            known = ", ".join(sorted(dataflows))
            return error_response(
                400,
                f"header {FLOW_ID_HEADER}: unknown flow {flow_id!r} for connection "
                f"{connection_id!r} (known: {known})",
            )

        body = await read_body(request, config.max_body_bytes, config.body_timeout_s)
        if body is None:
            return error_response(
                413, f"body: larger than the limit of {config.max_body_bytes} bytes"
            )
        self.stats.bytes_received += len(body)

        sync = request.query.get("syncValidation", "").lower() == "true"
        if sync and batch:
            return error_response(400, "query syncValidation: not supported on the batch endpoint")
        if sync and config.sync_validation == "unsupported":
            return error_response(
                501, "query syncValidation: synchronous validation is not supported in this region"
            )
        document = parse_json(body)
        if isinstance(document, web.Response):
            return document

        if dataflows is not None and not batch and connection is not None:
            if flow_id is not None:
                return self._accept_raw(connection_id, connection, flow_id, body, document, sync)
            if not _is_envelope(document):
                return error_response(
                    400,
                    f"header {FLOW_ID_HEADER}: required but missing: connection "
                    f"{connection_id!r} is a dataflow inlet and the body is not an XDM message "
                    "(a raw payload needs the id of its dataflow)",
                )

        if batch:
            if not isinstance(document, dict) or "messages" not in document:
                return error_response(
                    400, 'body.messages: required but missing ({"messages": [...]})'
                )
            messages = document["messages"]
            if not isinstance(messages, list):
                return error_response(400, "body.messages: expected an array")
            if not messages:
                return error_response(400, "body.messages: empty; send at least one message")
        else:
            messages = [document]

        limited = self._rate_limit(connection_id, len(messages), sync)
        if limited is not None:
            return limited

        rules = self._rules.get(connection_id, self._open_rules)
        if batch:
            return self._accept_batch(connection_id, body, messages, rules)
        return self._accept_one(connection_id, body, document, rules, sync)

    def _accept_batch(
        self,
        connection_id: str,
        body: bytes,
        messages: list[Any],
        rules: EnvelopeRules,
    ) -> web.Response:
        received_ms = now_ms()
        batch_id = self._next_id(received_ms, len(messages))
        reject_rules = self.reject_rules
        responses: list[dict[str, Any]] = []
        accepted: list[tuple[int, str]] = []
        for index, message in enumerate(messages):
            xaction_id = f"{batch_id}:{index}"
            violations = check_message(message, rules)
            if violations:
                text = describe(violations, f"messages[{index}]")
                responses.append(self._rejection(xaction_id, 400, text))
                continue
            if reject_rules:
                rule = matching_reject_rule(message, reject_rules)
                if rule is not None:
                    text = f"messages[{index}]: {rule.message}"
                    responses.append(self._rejection(xaction_id, rule.status, text))
                    continue
            responses.append({"xactionId": xaction_id})
            accepted.append((index, message["header"]["datasetId"]))

        self.stats.messages_rejected += len(messages) - len(accepted)
        if accepted:
            stored = AcceptedRequest(connection_id, received_ms, body, batch_id, True, accepted)
            self._record(stored, messages)
        reply = {
            "inletId": connection_id,
            "batchId": batch_id,
            "receivedTimeMs": received_ms,
            "responses": responses,
        }
        return json_response(reply, 207)

    def _accept_one(
        self,
        connection_id: str,
        body: bytes,
        message: Any,
        rules: EnvelopeRules,
        sync: bool,
    ) -> web.Response:
        violations = check_message(message, rules)
        if violations:
            self.stats.messages_rejected += 1
            return self._message_refused(400, violations, connection_id, sync)
        rule = matching_reject_rule(message, self.reject_rules)
        if rule is not None:
            self.stats.messages_rejected += 1
            violation = Violation((), "rejectRule", rule.message)
            return self._message_refused(rule.status, [violation], connection_id, sync)

        received_ms = now_ms()
        xaction_id = self._next_id(received_ms, 1)
        dataset_id = message["header"]["datasetId"]
        stored = AcceptedRequest(
            connection_id, received_ms, body, xaction_id, False, [(0, dataset_id)]
        )
        self._record(stored, [message])
        reply = {
            "inletId": connection_id,
            "xactionId": xaction_id,
            # A string here, as in the API reference's example answer (the batch one is a number).
            "receivedTimeMs": str(received_ms),
            "syncValidation": {"status": "pass"} if sync else {"skipped": True},
        }
        return json_response(reply, 200)

    def _accept_raw(
        self,
        connection_id: str,
        connection: ConnectionConfig,
        flow_id: str,
        body: bytes,
        payload: Any,
        sync: bool,
    ) -> web.Response:
        """A raw (non-XDM) payload for a dataflow of an HTTP API source connection: the
        dataflow's own mapping makes it XDM later, so only its shape and reject rules apply."""
        if type(payload) is not dict:
            kind = "an array" if type(payload) is list else "not an object"
            return error_response(400, f"body: a raw payload must be a JSON object, got {kind}")
        limited = self._rate_limit(connection_id, 1, sync)
        if limited is not None:
            return limited
        rule = matching_reject_rule(payload, self.reject_rules)
        if rule is not None:
            self.stats.messages_rejected += 1
            violation = Violation((), "rejectRule", rule.message)
            return self._message_refused(rule.status, [violation], connection_id, sync)

        received_ms = now_ms()
        xaction_id = self._next_id(received_ms, 1)
        dataflows = connection.dataflows or {}
        dataset_id = dataflows[flow_id].dataset
        stored = AcceptedRequest(
            connection_id, received_ms, body, xaction_id, False, [(0, dataset_id)], flow_id
        )
        self._record(stored, [payload])
        self.stats.accepted_by_flow[flow_id] += 1
        reply = {
            "inletId": connection_id,
            "xactionId": xaction_id,
            "receivedTimeMs": str(received_ms),
            "syncValidation": {"status": "pass"} if sync else {"skipped": True},
        }
        return json_response(reply, 200)

    def _message_refused(
        self, status: int, violations: list[Violation], connection_id: str, sync: bool
    ) -> web.Response:
        text = describe(violations)
        if not sync:
            return error_response(status, text)
        # As the Platform words it, each violation and the report name the JSON pointer.
        pointed = [f"{v.pointer()}: {v.message}" for v in violations]
        report = {
            "message": f"inletId: [{connection_id}] Message is invalid: [{'; '.join(pointed)}]",
            "cause": {
                "_streamingValidation": [
                    {"pointerToViolation": v.pointer(), "keyword": v.keyword, "message": text}
                    for v, text in zip(violations, pointed, strict=True)
                ]
            },
        }
        return error_response(status, text, report=report)

    def _rejection(self, xaction_id: str, status: int, message: str) -> dict[str, Any]:
        """A rejected batch entry in the configured shape."""
        shape = self.config.rejection_shape
        if shape == "statusCode":
            return {"statusCode": status, "message": message}
        if shape == "status":
            return {"status": status, "message": message}
        return {"xactionId": xaction_id, "status": status, "message": message}

    def _record(self, stored: AcceptedRequest, messages: list[Any]) -> None:
        count = len(stored.accepted)
        self.stats.messages_accepted += count
        self.stats.accepted_by_connection[stored.connection_id] += count
        self.stats.accepted_by_dataset.update(d for _, d in stored.accepted if d is not None)
        self.store.add(stored, messages)

    def _next_id(self, received_ms: int, count: int) -> str:
        """`<ms>:<counter>:<messages>`, the shape of the API's batch and transaction ids."""
        self._requests_seen += 1
        return f"{received_ms}:{self._requests_seen:04d}:{count}"

    def _check_bearer(self, request: web.Request, connection_id: str) -> web.Response | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return error_response(
                401,
                f"header Authorization: a bearer token is required for connection "
                f"{connection_id!r} (authentication is enabled)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        state = self.tokens.check(token)
        if state is TokenState.EXPIRED:
            return error_response(403, "header Authorization: the bearer token has expired")
        if state is TokenState.UNKNOWN:
            return error_response(403, "header Authorization: the bearer token is not valid")
        return None

    def _unsupported_media_type(self, content_type: str) -> web.Response:
        if content_type == SMILE:
            message = (
                f"header Content-Type: {SMILE} is not supported by this emulator "
                f"(no Smile codec); send {JSON}"
            )
        else:
            message = f"header Content-Type: expected {JSON}, got {content_type!r}"
        return error_response(415, message)

    def _rate_limit(self, connection_id: str, messages: int, sync: bool) -> web.Response | None:
        """A 429 when a budget is spent; nothing is charged unless the request is admitted."""
        per_min = self.config.sync_validation_per_min
        sync_bucket = None
        if sync and per_min is not None:
            sync_bucket = self._sync_limiters.get(connection_id)
            if sync_bucket is None:
                sync_bucket = TokenBucket(per_min / 60, per_min, self.clock.now)
                self._sync_limiters[connection_id] = sync_bucket
            if not sync_bucket.can_take(1):
                return error_response(
                    429,
                    f"connection {connection_id!r}: more than {per_min} "
                    "syncValidation requests per minute",
                )
        limiter = self._limiters.get(connection_id)
        if limiter is not None and not limiter.admit(messages):
            headers = (
                {"Retry-After": str(limiter.retry_after_s)}
                if limiter.retry_after_s is not None
                else None
            )
            return error_response(
                429, f"connection {connection_id!r}: rate limit exceeded", headers=headers
            )
        if sync_bucket is not None:
            sync_bucket.take(1)
        return None

    # --- the token endpoint ---------------------------------------------------------------

    async def issue_token(self, request: web.Request) -> web.StreamResponse:
        """POST /ims/token/v3: client credentials in, a bearer token out."""
        action = self.faults.next_action("token")
        response = await self._apply_fault(request, action, endpoint="token")
        if response is None:
            response = await self._issue_token(request)
        if action.kind == "accept_drop":
            return _drop_answer(request)
        if action.kind != "drop":
            self.stats.token_requests_by_status[str(response.status)] += 1
        return response

    async def _issue_token(self, request: web.Request) -> web.Response:
        if request.content_type != FORM:
            return _ims_error(400, "invalid_request", f"the body must be {FORM}")
        body = await read_body(request, MAX_CONTROL_BODY_BYTES, self.config.body_timeout_s)
        if body is None:
            return _ims_error(413, "invalid_request", "the body is too large")
        try:
            fields = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            return _ims_error(400, "invalid_request", "the body is not UTF-8")
        form = {name: values[0] for name, values in fields.items()}
        if form.get("grant_type") != "client_credentials":
            return _ims_error(
                400, "unsupported_grant_type", "grant_type must be client_credentials"
            )
        client_id = form.get("client_id")
        client_secret = form.get("client_secret")
        if not isinstance(client_id, str) or not client_id:
            return _ims_error(400, "invalid_request", "client_id is required")
        if not isinstance(client_secret, str) or not client_secret:
            return _ims_error(400, "invalid_request", "client_secret is required")
        if not self.tokens.known_client(client_id, client_secret):
            return _ims_error(401, "invalid_client", "invalid client_id or client_secret")
        self.stats.tokens_issued += 1
        answer = {
            "access_token": self.tokens.issue(),
            "token_type": "bearer",
            "expires_in": self.tokens.lifetime_s,
        }
        return json_response(answer)

    # --- faults -----------------------------------------------------------------------------

    async def _apply_fault(
        self, request: web.Request, action: FaultAction, endpoint: Endpoint = "collection"
    ) -> web.Response | None:
        """Wait as the action says, then answer for it; None means "carry on normally"."""
        if action.delay_ms:
            await asyncio.sleep(action.delay_ms / 1000)
        if action.kind == "ok":
            return None
        self.stats.faults_injected[action.kind] += 1
        if action.kind == "accept_drop":
            return None  # served as usual; the caller drops the answer
        if action.kind == "stall":
            await self._wait_until_released()
            return None
        if action.kind == "drop":
            if endpoint == "collection":
                self.stats.requests_dropped += 1
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=204)  # never sent: the connection is already closed
        headers = (
            {"Retry-After": str(action.retry_after_s)} if action.retry_after_s is not None else None
        )
        return error_response(int(action.kind), f"injected fault: {action.kind}", headers=headers)

    async def _wait_until_released(self) -> None:
        released = self._released
        self._stalled += 1
        try:
            await released.wait()
        finally:
            self._stalled -= 1

    def set_fault_plan(self, plan: FaultPlan | None) -> None:
        """Replace the plan and let every stalled request carry on."""
        self.faults.set_plan(plan)
        released, self._released = self._released, asyncio.Event()
        released.set()

    # --- the control API --------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def messages(self, request: web.Request) -> web.StreamResponse:
        """GET /__emulator/messages[?connection=…&dataset=…&flow=…]: accepted messages as JSON
        lines."""
        unknown = set(request.query) - {"connection", "dataset", "flow"}
        if unknown:
            names = ", ".join(sorted(unknown))
            return error_response(400, f"query: unknown parameter(s) {names}")
        query = request.query
        lines = self.store.lines(query.get("connection"), query.get("dataset"), query.get("flow"))
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        chunk = bytearray()
        for line in lines:
            chunk += line
            if len(chunk) >= 256 * 1024:
                await response.write(bytes(chunk))
                chunk.clear()
        if chunk:
            await response.write(bytes(chunk))
        await response.write_eof()
        return response

    async def stats_view(self, request: web.Request) -> web.Response:
        snapshot = self.stats.snapshot()
        snapshot.update(
            messages_stored=self.store.stored,
            bytes_stored=self.store.stored_bytes,
            messages_evicted=self.store.evicted,
            requests_stalled=self._stalled,
            clock_offset_s=self.clock.offset,
        )
        return json_response(snapshot)

    async def get_faults(self, request: web.Request) -> web.Response:
        return json_response(self._faults_view())

    async def post_faults(self, request: web.Request) -> web.Response:
        data = await self._json_body(request)
        if isinstance(data, web.Response):
            return data
        try:
            plan = FaultPlan.model_validate(data)
        except ValidationError as exc:
            return error_response(400, "; ".join(describe_errors(exc)))
        self.set_fault_plan(plan)
        return json_response(self._faults_view())

    async def delete_faults(self, request: web.Request) -> web.Response:
        self.set_fault_plan(None)
        return json_response(self._faults_view())

    def _faults_view(self) -> dict[str, Any]:
        plan = self.faults.plan
        return {
            "plan": plan.model_dump() if plan is not None else None,
            "remaining_sequence": self.faults.remaining_sequence,
        }

    async def get_reject(self, request: web.Request) -> web.Response:
        return json_response(self._reject_view())

    async def post_reject(self, request: web.Request) -> web.Response:
        data = await self._json_body(request)
        if isinstance(data, web.Response):
            return data
        try:
            rules = _reject_rules_adapter.validate_python(data)
        except ValidationError as exc:
            return error_response(400, "; ".join(describe_errors(exc)))
        self.reject_rules = compile_reject_rules(rules)
        return json_response(self._reject_view())

    async def delete_reject(self, request: web.Request) -> web.Response:
        self.reject_rules = ()
        return json_response(self._reject_view())

    def _reject_view(self) -> list[dict[str, Any]]:
        return [
            {"pointer": r.pointer, "equals": r.equals, "status": r.status, "message": r.message}
            for r in self.reject_rules
        ]

    async def advance_clock(self, request: web.Request) -> web.Response:
        data = await self._json_body(request)
        if isinstance(data, web.Response):
            return data
        seconds = data.get("advance_s") if isinstance(data, dict) else None
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            return error_response(400, "body.advance_s: expected a number of seconds >= 0")
        self.clock.advance(float(seconds))
        return json_response({"offset_s": self.clock.offset})

    async def reset(self, request: web.Request) -> web.Response:
        """Forget messages and counters; faults, reject rules and rate limits return to the
        configuration's. Tokens and the clock are kept, so a running client stays signed in."""
        self.store.clear()
        self.stats = Stats()
        self.set_fault_plan(self.config.faults)
        self.reject_rules = compile_reject_rules(self.config.reject)
        self._reset_limiters()
        return json_response({"status": "reset"})

    def _reset_limiters(self) -> None:
        self._limiters = {
            connection_id: ConnectionLimiter(c.rate_limit, self.clock.now)
            for connection_id, c in self.config.connections.items()
            if c.rate_limit is not None
        }
        self._sync_limiters = {}

    async def _json_body(self, request: web.Request) -> Any:
        """The request's JSON body, or a 400/413 response saying why it is not one."""
        body = await read_body(request, MAX_CONTROL_BODY_BYTES, self.config.body_timeout_s)
        if body is None:
            return error_response(413, f"body: larger than {MAX_CONTROL_BODY_BYTES} bytes")
        return parse_json(body)

    def control_refusal(self, request: web.Request) -> web.Response | None:
        """Why a control request may not be served, or None. Loopback clients always may;
        others only with the configured token. The health check is open to all."""
        refusal = self._control_refusal(request)
        if refusal is not None:
            self.stats.control_refused += 1
        return refusal

    def _control_refusal(self, request: web.Request) -> web.Response | None:
        if request.path == f"{CONTROL}/health":
            return None
        transport = request.transport
        if is_loopback(transport.get_extra_info("peername") if transport else None):
            return None
        token = self.config.control_token
        if token is None:
            return error_response(
                403,
                "control API: only loopback clients may use it unless a control token is "
                f"configured (control_token, or the {CONTROL_TOKEN_ENV} environment variable)",
            )
        given = request.headers.get(CONTROL_TOKEN_HEADER)
        if given is None:
            return error_response(
                401, f"header {CONTROL_TOKEN_HEADER}: required for the control API"
            )
        if not secrets.compare_digest(given.encode(), token.get_secret_value().encode()):
            return error_response(403, f"header {CONTROL_TOKEN_HEADER}: not valid")
        return None

    def close(self) -> None:
        self.store.close()


def _is_envelope(document: Any) -> bool:
    """Whether a body is shaped as an XDM message rather than a raw payload."""
    return type(document) is dict and "header" in document and "body" in document


def _drop_answer(request: web.Request) -> web.Response:
    """Close the connection instead of answering (the request has been served)."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=204)  # never sent: the connection is already closed


def _ims_error(status: int, error: str, description: str) -> web.Response:
    """An error as IMS words it: {"error", "error_description"}."""
    return json_response({"error": error, "error_description": description}, status)


EMULATOR_KEY = web.AppKey("emulator", Emulator)


def create_app(config: EmulatorConfig, clock: AdjustableClock | None = None) -> web.Application:
    """The aiohttp application; raises EmulatorConfigError for unusable schema or record files."""
    emulator = Emulator(config, clock)

    def count_body_timeout() -> None:
        emulator.stats.body_timeouts += 1

    @web.middleware
    async def control_access(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(f"{CONTROL}/"):
            refused = emulator.control_refusal(request)
            if refused is not None:
                return refused
        return await handler(request)

    app = web.Application(middlewares=[guard_middleware(count_body_timeout), control_access])
    app[EMULATOR_KEY] = emulator
    app.router.add_post("/collection/batch/{connection_id}", emulator.collect_batch)
    app.router.add_post("/collection/{connection_id}", emulator.collect_one)
    app.router.add_post("/ims/token/v3", emulator.issue_token)
    app.router.add_get(f"{CONTROL}/health", emulator.health)
    app.router.add_get(f"{CONTROL}/messages", emulator.messages)
    app.router.add_get(f"{CONTROL}/stats", emulator.stats_view)
    app.router.add_get(f"{CONTROL}/faults", emulator.get_faults)
    app.router.add_post(f"{CONTROL}/faults", emulator.post_faults)
    app.router.add_delete(f"{CONTROL}/faults", emulator.delete_faults)
    app.router.add_get(f"{CONTROL}/reject", emulator.get_reject)
    app.router.add_post(f"{CONTROL}/reject", emulator.post_reject)
    app.router.add_delete(f"{CONTROL}/reject", emulator.delete_reject)
    app.router.add_post(f"{CONTROL}/clock", emulator.advance_clock)
    app.router.add_post(f"{CONTROL}/reset", emulator.reset)

    async def release_stalled(_app: web.Application) -> None:
        # Runs before the server waits for open requests, so stalled ones finish at once.
        emulator.set_fault_plan(None)

    async def close(_app: web.Application) -> None:
        emulator.close()

    app.on_shutdown.append(release_stalled)
    app.on_cleanup.append(close)
    return app


def serve(app: web.Application, host: str, port: int) -> None:
    """Run until SIGINT or SIGTERM, with the configuration's connection timeouts."""
    emulator = app[EMULATOR_KEY]
    config = emulator.config

    def count_header_timeout() -> None:
        emulator.stats.header_timeouts += 1

    serve_guarded(
        app,
        host,
        port,
        header_timeout_s=config.header_timeout_s,
        idle_timeout_s=config.idle_timeout_s,
        on_header_timeout=count_header_timeout,
    )
