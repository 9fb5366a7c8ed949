"""Bearer tokens as IMS issues them for server-to-server credentials: opaque, with an expiry.

Only the emulator's own clock decides expiry, so tests expire tokens by advancing it.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence

from connector.emulator.clock import Clock
from connector.emulator.config import Credential


class TokenState(enum.Enum):
    VALID = "valid"
    UNKNOWN = "unknown"
    EXPIRED = "expired"


class TokenIssuer:
    """Checks client credentials, issues tokens and remembers when each one expires."""

    def __init__(self, credentials: Sequence[Credential], lifetime_s: int, clock: Clock) -> None:
        self.lifetime_s = lifetime_s
        self._secrets = {c.client_id: c.client_secret.get_secret_value() for c in credentials}
        self._clock = clock
        self._expiry: dict[str, float] = {}

    def known_client(self, client_id: str, client_secret: str) -> bool:
        expected = self._secrets.get(client_id)
        if expected is None:
            return False
        return secrets.compare_digest(expected.encode(), client_secret.encode())

    def issue(self) -> str:
        token = secrets.token_urlsafe(32)
        self._expiry[token] = self._clock() + self.lifetime_s
        return token

    def check(self, token: str) -> TokenState:
        expiry = self._expiry.get(token)
        if expiry is None:
            return TokenState.UNKNOWN
        if self._clock() >= expiry:
            return TokenState.EXPIRED
        return TokenState.VALID

    @property
    def issued(self) -> int:
        return len(self._expiry)
