"""Token issue and expiry with an injected clock."""

from __future__ import annotations

from pydantic import SecretStr

from connector.emulator.auth import TokenIssuer, TokenState
from connector.emulator.config import Credential


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def issuer(clock: FakeClock) -> TokenIssuer:
    credential = Credential(client_id="id-1", client_secret=SecretStr("s3cret"))
    return TokenIssuer([credential], lifetime_s=60, clock=clock)


def test_only_configured_credentials_are_known() -> None:
    tokens = issuer(FakeClock())
    assert tokens.known_client("id-1", "s3cret")
    assert not tokens.known_client("id-1", "wrong")
    assert not tokens.known_client("id-2", "s3cret")


def test_a_token_is_valid_until_its_lifetime_has_passed() -> None:
    clock = FakeClock()
    tokens = issuer(clock)
    token = tokens.issue()
    assert tokens.check(token) is TokenState.VALID
    clock.now += 59.9
    assert tokens.check(token) is TokenState.VALID
    clock.now += 0.1
    assert tokens.check(token) is TokenState.EXPIRED
    fresh = tokens.issue()
    assert fresh != token
    assert tokens.check(fresh) is TokenState.VALID


def test_a_token_never_issued_is_unknown() -> None:
    assert issuer(FakeClock()).check("made-up") is TokenState.UNKNOWN
