"""XDM entity → the Platform's message envelope, as bytes, serialized once.

The envelope of every record of one mapping differs only in `createdAt` and the entity, so
the constant parts (header, `body.xdmMeta`) are encoded once per target and each message is
three byte strings joined around the entity's own orjson encoding:

    {"header":{"schemaRef":…,"imsOrgId":…,"datasetId":…,"flowId":…,"source":{"name":…},
               "createdAt":"<epoch ms>"},
     "body":{"xdmMeta":{"schemaRef":…},"xdmEntity":<entity>}}

A raw mapping (`target.mode: raw`) has no envelope: its message is the decoded record itself
(`encode_raw`), for an HTTP API source dataflow that maps it in the Platform.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import orjson

#: The content type of a schema reference when a mapping does not give one.
DEFAULT_CONTENT_TYPE = "application/vnd.adobe.xed-full+json;version=1"


@dataclass(frozen=True, slots=True)
class EnvelopeTarget:
    """Where messages go: the header fields of the envelope (imsOrgId and flowId optional)."""

    dataset_id: str
    schema_id: str
    source_name: str
    content_type: str = DEFAULT_CONTENT_TYPE
    ims_org_id: str | None = None
    flow_id: str | None = None

    @property
    def schema_ref(self) -> dict[str, str]:
        return {"id": self.schema_id, "contentType": self.content_type}


class Envelope:
    """Encodes messages for one target; build it once, call `encode` per record."""

    __slots__ = ("_before_created_at", "_before_entity", "_head", "_head_ms", "target")

    def __init__(self, target: EnvelopeTarget) -> None:
        self.target = target
        header: dict[str, object] = {"schemaRef": target.schema_ref}
        if target.ims_org_id is not None:
            header["imsOrgId"] = target.ims_org_id
        header["datasetId"] = target.dataset_id
        if target.flow_id is not None:
            header["flowId"] = target.flow_id
        header["source"] = {"name": target.source_name}
        encoded_header = orjson.dumps(header)
        # The header object is left open so that createdAt can close it.
        self._before_created_at = b'{"header":' + encoded_header[:-1] + b',"createdAt":"'
        self._before_entity = (
            b'"},"body":{"xdmMeta":{"schemaRef":'
            + orjson.dumps(target.schema_ref)
            + b'},"xdmEntity":'
        )
        # Everything before the entity, for the last createdAt: the worker stamps every record
        # of a consumed batch with the same time.
        self._head_ms: int | None = None
        self._head = b""

    def encode(self, entity: dict[str, object], created_at_ms: int) -> bytes:
        """The whole message. Raises orjson.JSONEncodeError (a TypeError) for an entity that is
        not JSON; entities from a compiled mapping always are."""
        if created_at_ms != self._head_ms:
            self._head = b"".join(
                (
                    self._before_created_at,
                    str(int(created_at_ms)).encode("ascii"),
                    self._before_entity,
                )
            )
            self._head_ms = created_at_ms
        return b"".join((self._head, orjson.dumps(entity), b"}}"))


def encode_envelope(target: EnvelopeTarget, entity: dict[str, object], created_at_ms: int) -> bytes:
    """One message without keeping an Envelope (slower per call: it encodes the header too)."""
    return Envelope(target).encode(entity, created_at_ms)


def encode_raw(record: dict[str, object], created_at_ms: int = 0) -> bytes:
    """The message of a raw mapping: the decoded record as compact JSON, nulls and empty values
    kept (the dataflow's mapping decides about them). Values Avro decodes to but JSON lacks are
    written as a mapping writes them: decimals as numbers, bytes as UTF-8 text, UUIDs and
    dates as text (UTC as `Z`). `created_at_ms` is unused: a raw payload has no header.
    Raises orjson.JSONEncodeError (a TypeError) for a value JSON cannot carry."""
    return orjson.dumps(record, default=_json_value, option=orjson.OPT_UTC_Z)


def _json_value(value: object) -> object:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise TypeError("a decimal that is not finite")
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    raise TypeError(f"a {type(value).__name__} cannot be sent as JSON")
