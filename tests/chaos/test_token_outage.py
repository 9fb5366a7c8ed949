"""The identity service fails while the API refuses the worker's token (issue 10, edge 1):
the tokens expire at the emulator, every request is refused, and renewing fails with 503s,
dropped connections and hangs longer than the request timeout. The workers must ride it out
like any transient failure (no halt, no crash, no dead letters) and carry on once tokens can
be had again."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.chaos.harness import ChaosRun
from tests.chaos.token_proxy import TokenProxy

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

LIFETIME_S = 3600
AUTH = {
    "connections": {"conn-1": {"authentication": True}},
    "credentials": [{"client_id": "chaos", "client_secret": "chaos-secret"}],
    "token_lifetime_s": LIFETIME_S,
}
REQUEST_TIMEOUT_S = 2.0


def auth_settings(proxy: TokenProxy) -> dict[str, str]:
    return {
        "AEP_CONNECTOR_PLATFORM__AUTH__CLIENT_ID": "chaos",
        "AEP_CONNECTOR_PLATFORM__AUTH__CLIENT_SECRET": "chaos-secret",
        "AEP_CONNECTOR_PLATFORM__AUTH__TOKEN_URL": proxy.url,
        "AEP_CONNECTOR_PLATFORM__REQUEST_TIMEOUT_S": str(REQUEST_TIMEOUT_S),
    }


def test_token_endpoint_failing_while_the_api_refuses_the_token(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    with ChaosRun(kafka_bootstrap, tmp_path, "identity outage", emulator_config=AUTH) as run:
        scale = run.scale
        phase = scale.token_phase_s
        with TokenProxy(run.api.token_url, hang_s=REQUEST_TIMEOUT_S + 1) as proxy:
            workers = run.start_workers(2, **auth_settings(proxy))
            run.wait_for(lambda: run.have_partitions(workers), 60, "both workers to join")
            feeding = run.start_feeding(scale.records, over_s=3 * phase + 4)
            run.wait_for(lambda: len(run.ledger.accepted) > 0, 60, "first acceptances")
            proxy.mode = "503"
            run.api.advance_clock(LIFETIME_S + 1)  # every token issued so far has expired
            for mode in ("503", "drop", "hang"):
                proxy.mode = mode
                time.sleep(phase)  # the outage's schedule, not a wait for a condition
            proxy.mode = "forward"
            feeding.join()
            run.wait_drained()
            refused = run.api.stats()["requests_by_status"].get("403", 0)
            failed = {m: proxy.requests[m] for m in ("503", "drop", "hang")}
            summary = run.finish(
                requests_refused_403=str(refused),
                token_requests_failed=", ".join(f"{m} {n}" for m, n in failed.items()),
            )
    assert refused > 0, "the API never refused an expired token: the scenario did not happen"
    assert all(failed.values()), f"a way of failing was never tried: {failed}"
    assert summary.dead_lettered == 0


def test_revoked_during_an_identity_outage_sends_nothing_after_the_revoke(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A worker's requests wait for a token when a second worker joins and takes half of its
    partitions: once tokens can be had again, the cancelled requests of the revoked partitions
    must not be sent (the new owner sends those records; duplicates must be 0)."""
    with (
        ChaosRun(
            kafka_bootstrap, tmp_path, "revoke during an identity outage", emulator_config=AUTH
        ) as run,
        TokenProxy(run.api.token_url, hang_s=REQUEST_TIMEOUT_S + 1) as proxy,
    ):
        first = run.start_workers(1, **auth_settings(proxy))[0]
        run.wait_for(lambda: run.have_partitions([first]), 60, "the first worker to join")
        run.produce(run.scale.records // 4)
        run.wait_for(lambda: len(run.ledger.accepted) > 0, 60, "first acceptances")
        proxy.mode = "hang"  # each token request outlasts the request timeout
        run.api.advance_clock(LIFETIME_S + 1)
        feeding = run.start_feeding(run.scale.records - run.scale.records // 4, over_s=4)
        second = run.start_workers(1, **auth_settings(proxy))[0]
        run.wait_for(lambda: run.have_partitions([second]), 60, "the second worker to join")
        time.sleep(1)  # the revoked requests stay cancelled for a moment
        proxy.mode = "forward"
        feeding.join()
        run.wait_drained()
        summary = run.finish(token_requests_hung=str(proxy.requests["hang"]))
    assert summary.duplicates == 0, (
        f"{summary.duplicates} records of revoked partitions were sent after the revoke"
    )
