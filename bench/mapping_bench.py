"""Mapping benchmark: each example mapping compiled (generated code) against its hand-written
twin (bench/twins), on realistic generated records.

    .venv/bin/python bench/mapping_bench.py [--records 20000] [--rounds 7] [--profile]

For each example: CPU µs per record of map + envelope for the compiled mapping and for the
twin (which produces the same envelopes: tests/mapping/test_twins.py), and their ratio (the
target is at most 1.5). Rounds alternate between the two and the best round of each counts
(process CPU time, one core; the best round is the least disturbed by the rest of the
machine). Records are generated up front: decoding is the source stage's cost.
--profile prints cProfile's top entries for the compiled web-commerce mapping.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `connector` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.twins import crm_profile, web_commerce
from connector.mapping import CompiledMapping, TargetDefaults, load_mapping_file
from connector.records import SourceRecord

EXAMPLES = Path(__file__).resolve().parent.parent / "mappings" / "examples"
EXAMPLE = EXAMPLES / "web-commerce.yaml"

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


GENDERS = ["f", "F", "m", "M", "x", None]
FIRST = ["Jane", "Jürgen", "Ana", "Wei", "Amara", "Lars"]
LAST = ["Doe", "Müller", "Souza", "Chen", "Okafor", "Berg"]


def make_profile(rng: random.Random, index: int) -> dict[str, object]:
    """One CRM customer record of the shape the crm-profile example expects."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    record: dict[str, object] = {
        "customerId": f"C-{index}",
        "name": {"first": first, "last": last},
        "email": f" {first}.{last}{rng.randrange(1000)}@Example.com ",
        "emailStatus": rng.choice(["active", "pending"]),
        "marketingOptIn": rng.choice(["Y", "no", "true"]),
        "updatedAt": 1_714_567_890_123 + index * 977,
        "birthDate": f"{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/{rng.randint(1940, 2005)}",
    }
    gender = rng.choice(GENDERS)
    if gender is not None:
        record["gender"] = gender
    if rng.random() < 0.3:
        record["name"] = {"first": first, "middle": "F", "last": last}
    return record


Generator = Callable[[random.Random, int], dict[str, object]]
Twin = Callable[[dict[str, object], SourceRecord], dict[str, object] | None]

#: Each example mapping's record generator and hand-written twin.
GENERATORS: dict[str, Generator] = {"web-commerce": make_record, "crm-profile": make_profile}
TWINS: dict[str, Twin] = {
    "web-commerce": web_commerce.map_record,
    "crm-profile": crm_profile.map_record,
}


def compiled_round(
    mapping: CompiledMapping, pairs: list[tuple[dict[str, object], SourceRecord]]
) -> float:
    apply, envelope = mapping.apply, mapping.envelope
    start = time.process_time()
    for value, meta in pairs:
        entity = apply(value, meta).entity
        if entity is not None:
            envelope(entity, 1_714_560_000_000)
    return time.process_time() - start


def twin_round(
    twin: Twin, mapping: CompiledMapping, pairs: list[tuple[dict[str, object], SourceRecord]]
) -> float:
    envelope = mapping.envelope  # the same envelope encoder: only the mapping differs
    start = time.process_time()
    for value, meta in pairs:
        entity = twin(value, meta)
        if entity is not None:
            envelope(entity, 1_714_560_000_000)
    return time.process_time() - start


def measure(name: str, records: int, rounds: int) -> tuple[float, float]:
    """Best CPU µs per record of the compiled mapping and of its twin."""
    mapping = load_mapping_file(EXAMPLES / f"{name}.yaml", TargetDefaults("bench", "B@AdobeOrg"))
    rng = random.Random(42)
    topic = mapping.source_topics[0]
    pairs = [
        (GENERATORS[name](rng, i), SourceRecord(topic, i % 6, i, None, None, None))
        for i in range(records)
    ]
    twin = TWINS[name]
    compiled_round(mapping, pairs[:1000])  # warm up: caches, first-call costs
    twin_round(twin, mapping, pairs[:1000])
    best_compiled = best_twin = float("inf")
    for _ in range(rounds):
        best_compiled = min(best_compiled, compiled_round(mapping, pairs))
        best_twin = min(best_twin, twin_round(twin, mapping, pairs))
    return best_compiled / records * 1e6, best_twin / records * 1e6


def profile(records: int) -> None:
    mapping = load_mapping_file(EXAMPLE, TargetDefaults("bench", "B@AdobeOrg"))
    rng = random.Random(42)
    pairs = [
        (make_record(rng, i), SourceRecord("web.commerce", 0, i, None, None, None))
        for i in range(records)
    ]
    compiled_round(mapping, pairs[:1000])
    profiler = cProfile.Profile()
    profiler.runcall(compiled_round, mapping, pairs)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="cProfile the compiled mapping")
    args = parser.parse_args()
    if args.profile:
        profile(args.records)
        return
    print(f"map + envelope, {args.records} records x {args.rounds} rounds (best, process CPU)")
    print(f"{'mapping':<14} {'compiled µs':>12} {'hand-written µs':>16} {'ratio':>6}  target")
    worst = 0.0
    for name in GENERATORS:
        compiled, twin = measure(name, args.records, args.rounds)
        ratio = compiled / twin
        worst = max(worst, ratio)
        verdict = "ok" if ratio <= 1.5 else "over"
        print(f"{name:<14} {compiled:>12.2f} {twin:>16.2f} {ratio:>6.2f}  <= 1.5 {verdict}")
    print(f"worst ratio {worst:.2f}")


if __name__ == "__main__":
    main()
