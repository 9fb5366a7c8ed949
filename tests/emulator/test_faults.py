"""The fault plan's decisions, per request, without a server."""

from __future__ import annotations

from collections import Counter

import pytest
from pydantic import ValidationError

from connector.emulator.config import FaultPlan
from connector.emulator.faults import FaultAction, FaultInjector


def kinds(injector: FaultInjector, count: int) -> list[str]:
    return [injector.next_action().kind for _ in range(count)]


def test_without_a_plan_nothing_is_injected() -> None:
    assert kinds(FaultInjector(0), 5) == ["ok"] * 5


def test_a_sequence_is_consumed_one_step_per_request_then_normal() -> None:
    plan = FaultPlan(sequence=["503", "ok", "429", "drop", "500", "stall", "delay:40"])
    injector = FaultInjector(0, plan)
    actions = [injector.next_action() for _ in range(8)]
    assert actions == [
        FaultAction("503", 0, 1),
        FaultAction("ok"),
        FaultAction("429", 0, None),
        FaultAction("drop"),
        FaultAction("500"),
        FaultAction("stall"),
        FaultAction("ok", 40),
        FaultAction("ok"),
    ]
    assert injector.remaining_sequence == []


def test_accept_then_drop_is_a_sequence_step_and_a_probability() -> None:
    injector = FaultInjector(0, FaultPlan(sequence=["accept_drop", "ok"], latency_ms=5))
    assert injector.next_action() == FaultAction("accept_drop", 5)
    assert injector.next_action() == FaultAction("ok", 5)
    counts = Counter(kinds(FaultInjector(0, FaultPlan(p_accept_drop=0.25, seed=3)), 20_000))
    assert abs(counts["accept_drop"] / 20_000 - 0.25) < 0.02, counts
    assert set(counts) == {"accept_drop", "ok"}


def test_adding_accept_drop_keeps_the_other_kinds_draws() -> None:
    """A plan's existing faults fall on the same requests whether or not accept_drop is added."""
    base = {"p503": 0.3, "p500": 0.1, "p_drop": 0.1, "p429": 0.1, "seed": 7}
    before = kinds(FaultInjector(0, FaultPlan.model_validate(base)), 500)
    after = kinds(FaultInjector(0, FaultPlan.model_validate({**base, "p_accept_drop": 0.2})), 500)
    assert [a for a, b in zip(after, before, strict=True) if b != "ok"] == [
        b for b in before if b != "ok"
    ]
    assert "accept_drop" in after


def test_latency_and_retry_after_settings_shape_the_actions() -> None:
    plan = FaultPlan(latency_ms=25, retry_after_s=4, retry_after_429_s=2, sequence=["503", "429"])
    injector = FaultInjector(0, plan)
    assert injector.next_action() == FaultAction("503", 25, 4)
    assert injector.next_action() == FaultAction("429", 25, 2)
    assert injector.next_action() == FaultAction("ok", 25)


def test_the_same_seed_gives_the_same_faults() -> None:
    plan = FaultPlan(p503=0.3, p500=0.1, p_drop=0.1, p429=0.1, seed=7)
    first = kinds(FaultInjector(0, plan), 200)
    assert kinds(FaultInjector(99, plan), 200) == first  # the plan's seed wins
    replaced = FaultInjector(0, plan)
    kinds(replaced, 50)
    replaced.set_plan(plan)  # setting a plan restarts its generator
    assert kinds(replaced, 200) == first
    other = FaultPlan(p503=0.3, p500=0.1, p_drop=0.1, p429=0.1, seed=8)
    assert kinds(FaultInjector(0, other), 200) != first


def test_without_a_plan_seed_the_top_level_seed_is_used() -> None:
    plan = FaultPlan(p503=0.5)
    assert kinds(FaultInjector(3, plan), 100) == kinds(FaultInjector(3, plan), 100)
    assert kinds(FaultInjector(3, plan), 100) != kinds(FaultInjector(4, plan), 100)


def test_probabilities_give_the_expected_shares() -> None:
    plan = FaultPlan(p503=0.3, p500=0.1, p429=0.2, p_drop=0.05, seed=1)
    counts = Counter(kinds(FaultInjector(0, plan), 20_000))
    expected = {"503": 0.3, "500": 0.1, "429": 0.2, "drop": 0.05, "ok": 0.35}
    for kind, share in expected.items():
        assert abs(counts[kind] / 20_000 - share) < 0.02, (kind, counts)


def test_stall_holds_every_request_of_the_plan() -> None:
    injector = FaultInjector(0, FaultPlan(stall=True, sequence=["ok"]))
    assert kinds(injector, 3) == ["ok", "stall", "stall"]


def test_the_token_endpoint_is_spared_unless_the_plan_says_so() -> None:
    spared = FaultInjector(0, FaultPlan(sequence=["503"]))
    assert spared.next_action("token").kind == "ok"
    assert spared.next_action("collection").kind == "503"  # the step was not used up
    included = FaultInjector(0, FaultPlan(sequence=["503"], include_token_endpoint=True))
    assert included.next_action("token").kind == "503"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"p503": 0.6, "p500": 0.5},
            "p500 + p503 + p429 + p_drop + p_accept_drop must be at most 1, got 1.1",
        ),
        ({"p429": 1.5}, "less than or equal to 1"),
        ({"sequence": ["ok", "504"]}, "sequence[1]: unknown step '504'"),
        ({"sequence": ["delay:soon"]}, "unknown step 'delay:soon'"),
        ({"p_404": 0.1}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_plans_are_refused_with_the_reason(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        FaultPlan.model_validate(spec)
    assert message in str(caught.value)
