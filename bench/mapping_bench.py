"""Mapping benchmark: the web-commerce example compiled once, applied to realistic records.

    .venv/bin/python bench/mapping_bench.py [--records 50000] [--rounds 5] [--envelope]

Prints records/s and CPU µs per record for the best round (process CPU time, one core; the
best round is the least disturbed by the rest of the machine). Records are generated up front
(decoding is not measured: it is the source stage's cost); --envelope also encodes each
entity into its Platform message, as the worker does next.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from connector.mapping import TargetDefaults, load_mapping_file
from connector.records import RecordMeta

EXAMPLE = Path(__file__).resolve().parent.parent / "mappings" / "examples" / "web-commerce.yaml"

USER_AGENTS = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/123.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67",
]
PRODUCTS = [
    ("CC", "Fernie Snow", 7.5),
    ("GL-2", "Glacier Gloves", 24.5),
    ("SK-1", "Alpine Skis", 499.0),
    ("PL-4", "Poles", 39.75),
    ("WX-9", "Wax", 8.5),
    ("HT-3", "Wool Hat", 19.25),
]
EVENT_TYPES = ["productView", "productView", "productView", "addToCart", "purchase"]
LANGUAGES = ["en-US", "en-GB", "de-DE", "fr-FR", "es-ES"]


def make_record(rng: random.Random, index: int) -> dict[str, object]:
    """One storefront event of the shape the example mapping expects."""
    event_type = rng.choice(EVENT_TYPES)
    sku, name, _price = rng.choice(PRODUCTS)
    items = [
        {"sku": s, "name": n, "qty": str(rng.randint(1, 4)), "unitPrice": p}
        for s, n, p in rng.sample(PRODUCTS, rng.randint(1, 3))
    ]
    millis = 1_714_560_000_000 + index * 1_337
    seconds, ms = divmod(millis, 1000)
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"
    record: dict[str, object] = {
        "eventId": f"e-{index}",
        "visitorId": f"v-{rng.randrange(50_000):05x}",
        "ecid": str(rng.randrange(10**37, 10**38)),
        "eventType": event_type,
        "ts": ts,
        "page": {
            "url": f"https://shop.example.com/products/{sku.lower()}?utm_source=newsletter"
            f"&utm_campaign=spring-{rng.randrange(5)}",
            "title": name,
        },
        "device": {
            "ua": rng.choice(USER_AGENTS),
            "lang": rng.choice(LANGUAGES),
            "cookies": rng.choice(["yes", "no", "true"]),
            "java": "no",
            "viewport": {"h": rng.choice([799, 900, 1080]), "w": rng.choice([414, 1440, 1920])},
        },
        "user": {"email": f"  Customer{rng.randrange(10_000)}@Example.com "},
        "currency": "usd",
        "items": items,
    }
    if event_type == "purchase":
        record["orderId"] = f"ORD-{index}"
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--envelope", action="store_true", help="also encode the envelope")
    args = parser.parse_args()

    mapping = load_mapping_file(EXAMPLE, TargetDefaults("bench-inlet", "BENCH@AdobeOrg"))
    rng = random.Random(42)
    records = [make_record(rng, i) for i in range(args.records)]
    metas = [RecordMeta("web.commerce", i % 6, i, None, None, {}) for i in range(args.records)]
    pairs = list(zip(records, metas, strict=True))
    for value, meta in pairs[:1000]:  # warm up: user-agent cache, first-call costs
        mapping.apply(value, meta)

    apply, envelope = mapping.apply, mapping.envelope
    best_cpu = float("inf")
    for _ in range(args.rounds):
        start = time.process_time()
        if args.envelope:
            for value, meta in pairs:
                result = apply(value, meta)
                if result.entity is not None:
                    envelope(result.entity, 1_714_560_000_000)
        else:
            for value, meta in pairs:
                apply(value, meta)
        best_cpu = min(best_cpu, time.process_time() - start)

    per_record_us = best_cpu / args.records * 1e6
    what = "map + envelope" if args.envelope else "map"
    fields = sum(1 for line in EXAMPLE.read_text().splitlines() if "destination:" in line)
    print(f"mapping {mapping.name!r}: {fields} destination entries, {what}")
    print(f"records: {args.records} x {args.rounds} rounds (best round, process CPU time)")
    print(f"{args.records / best_cpu:,.0f} records/s, {per_record_us:.2f} µs per record")


if __name__ == "__main__":
    main()
