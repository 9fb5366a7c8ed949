"""The web-commerce example mapping written by hand: the floor the generated code is measured
against (bench/mapping_bench.py). tests/bench/test_twins.py asserts that it produces the same
envelopes as the compiled mapping on the example inputs and on generated records.

Written as a careful developer would for records of this shape: each field read once, the
library's cached parsers for user agents and URLs, the same rules for nulls and bad values
(a field that cannot be produced is left out).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from connector.mapping.functions import _query_pairs, _split_url
from connector.mapping.useragent import agent_info
from connector.mapping.values import FALSE_WORDS, TRUE_WORDS, rfc3339
from connector.records import SourceRecord

EVENT_TYPES = {
    "productView": "commerce.productViews",
    "addToCart": "commerce.productListAdds",
    "purchase": "commerce.purchases",
}
DEVICE_TYPES = {"Phone": "mobile", "Tablet": "tablet", "Desktop": "desktop"}


def _boolean(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    return None


def _quantity(value: object) -> int | None:
    try:
        return int(value) if isinstance(value, str) else None
    except ValueError:
        return None


def map_record(record: dict[str, object], meta: SourceRecord) -> dict[str, object] | None:
    """The entity, or None when the record is a heartbeat."""
    event_type = record.get("eventType")
    if event_type == "heartbeat":
        return None
    out: dict[str, object] = {}
    visitor, event = record.get("visitorId"), record.get("eventId")
    if isinstance(visitor, str) and isinstance(event, str):
        out["_id"] = hashlib.sha256(f"{visitor}|{event}".encode()).hexdigest()
    ts = record.get("ts")
    if isinstance(ts, str):
        parsed = datetime.fromisoformat(ts)
        out["timestamp"] = rfc3339(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))
    if isinstance(event_type, str):
        out["eventType"] = EVENT_TYPES.get(event_type, "web.webpagedetails.pageViews")
    ecid = record.get("ecid")
    if ecid:
        out["identityMap"] = {
            "ECID": [{"id": ecid, "authenticatedState": "ambiguous", "primary": True}]
        }

    device = record.get("device") or {}
    assert isinstance(device, dict)
    ua = device.get("ua")
    info = agent_info(ua) if isinstance(ua, str) else None
    browser: dict[str, object] = {}
    if ua is not None:
        browser["userAgent"] = ua
    if device.get("lang") is not None:
        browser["acceptLanguage"] = device["lang"]
    cookies = _boolean(device.get("cookies"))
    if cookies is not None:
        browser["cookiesEnabled"] = cookies
    java = _boolean(device.get("java"))
    if java is not None:
        browser["javaEnabled"] = java
    if info is not None and info.agent_name is not None:
        browser["name"] = info.agent_name
    if info is not None and info.agent_version is not None:
        browser["version"] = info.agent_version
    environment: dict[str, object] = {}
    if browser:
        environment["browserDetails"] = browser
    if info is not None and info.os_name is not None:
        environment["operatingSystem"] = info.os_name
    viewport = device.get("viewport") or {}
    assert isinstance(viewport, dict)
    if isinstance(viewport.get("h"), int):
        environment["viewportHeight"] = viewport["h"]
    if isinstance(viewport.get("w"), int):
        environment["viewportWidth"] = viewport["w"]
    if environment:
        out["environment"] = environment
    if info is not None and info.device_class in DEVICE_TYPES:
        out["device"] = {"type": DEVICE_TYPES[info.device_class]}

    page = record.get("page") or {}
    assert isinstance(page, dict)
    url = page.get("url")
    details: dict[str, object] = {}
    if url is not None:
        details["URL"] = url
    if page.get("title") is not None:
        details["name"] = page["title"]
    if details:
        out["web"] = {"webPageDetails": details}
    parts = _split_url(url) if isinstance(url, str) else None
    if parts is not None and parts[3]:
        campaign = dict(_query_pairs(parts[3])).get("utm_campaign")
        if campaign is not None:
            out["marketing"] = {"trackingCode": campaign}

    items = record.get("items")
    if isinstance(items, list) and items:
        currency = record.get("currency")
        code = currency.upper() if isinstance(currency, str) else None
        products: list[object] = []
        for item in items:
            quantity = _quantity(item.get("qty"))
            product: dict[str, object] = {"SKU": item["sku"], "name": item["name"]}
            if quantity is not None:
                product["quantity"] = quantity
                product["priceTotal"] = item["unitPrice"] * quantity
            if code is not None:
                product["currencyCode"] = code
            products.append(product)
        out["productListItems"] = products

    commerce: dict[str, object] = {}
    if event_type == "productView":
        commerce["productViews"] = {"value": 1}
    if event_type == "purchase":
        commerce["purchases"] = {"value": 1}
    if record.get("orderId") is not None:
        commerce["order"] = {"purchaseID": record["orderId"]}
    if commerce:
        out["commerce"] = commerce
    user = record.get("user") or {}
    assert isinstance(user, dict)
    email = user.get("email")
    if isinstance(email, str):
        address = email.strip().lower()
        out["_experience"] = {
            "campaign": {"message": {"profileSnapshot": {"workEmail": {"address": address}}}}
        }
    out["_acme"] = {"kafkaPosition": f"{meta.topic}/{meta.partition}/{meta.offset}"}
    return out
