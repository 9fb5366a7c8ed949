"""CHAOS_SCALE picks the scale; a typo is an error rather than a silent CI-scale run."""

from __future__ import annotations

import pytest

from tests.chaos.scale import CI, FULL, SCALE_VARIABLE, current


def test_the_ci_scale_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SCALE_VARIABLE, raising=False)
    assert current() is CI
    monkeypatch.setenv(SCALE_VARIABLE, "")
    assert current() is CI


def test_full_scale_is_issue_10s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SCALE_VARIABLE, " Full ")
    assert current() is FULL
    assert (FULL.records, FULL.kills, FULL.outage_s) == (200_000, 10, 600.0)


def test_an_unknown_scale_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SCALE_VARIABLE, "huge")
    with pytest.raises(ValueError, match="expected one of ci, full"):
        current()
