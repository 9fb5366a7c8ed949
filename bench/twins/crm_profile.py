"""The crm-profile example mapping written by hand (see bench/twins/web_commerce.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connector.mapping.values import FALSE_WORDS, TRUE_WORDS
from connector.records import SourceRecord

GENDERS = {"F": "female", "M": "male"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def map_record(record: dict[str, object], meta: SourceRecord) -> dict[str, object] | None:
    """The entity (this mapping has no filter)."""
    out: dict[str, object] = {}
    person: dict[str, object] = {}
    name = record.get("name")
    if isinstance(name, dict):
        names = {
            key: name[source]
            for key, source in (
                ("firstName", "first"),
                ("middleName", "middle"),
                ("lastName", "last"),
            )
            if name.get(source) is not None
        }
        if names:
            person["name"] = names
    birth = record.get("birthDate")
    if isinstance(birth, str):
        month, day, year = birth.split("/")
        person["birthDate"] = f"{int(year):04d}-{int(month):02d}-{int(day):02d}"
    gender = record.get("gender")
    code = gender.upper() if isinstance(gender, str) else None
    person["gender"] = GENDERS.get(code, "not_specified") if code else "not_specified"
    if person:
        out["person"] = person
    email = record.get("email")
    address = email.strip().lower() if isinstance(email, str) else None
    work: dict[str, object] = {"primary": True}
    if address is not None:
        work["address"] = address
    work["type"] = "work"
    if record.get("emailStatus") is not None:
        work["status"] = record["emailStatus"]
    out["workEmail"] = work
    acme: dict[str, object] = {}
    if record.get("customerId") is not None:
        acme["customerId"] = record["customerId"]
    opt_in = record.get("marketingOptIn")
    if opt_in in TRUE_WORDS:
        acme["marketingOptIn"] = True
    elif opt_in in FALSE_WORDS:
        acme["marketingOptIn"] = False
    updated = record.get("updatedAt")
    if isinstance(updated, int):
        when = EPOCH + timedelta(milliseconds=updated)
        acme["updatedAt"] = f"{when:%Y-%m-%dT%H:%M:%S}.{when.microsecond // 1000:03d}Z"
    if acme:
        out["_acme"] = acme
    if address is not None:
        out["identityMap"] = {
            "Email": [{"id": address, "authenticatedState": "authenticated", "primary": True}]
        }
    return out
