"""User-agent functions on top of ua-parser (uap-core's maintained regexes, shipped by the
ua-parser-builtins package).

User agents repeat a lot in a stream, so each distinct string is parsed once and the eight
derived values are kept in a bounded LRU cache. Only the first MAX_USER_AGENT_CHARS characters
are parsed (real user agents are far shorter), so that a hostile value costs no more than a
long real one and the cache's size in bytes stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ua_parser import BasicResolver, Domain, PartialResult, Resolver, load_builtins

from connector.mapping.limits import MAX_USER_AGENT_CHARS

#: Distinct user agents whose derived values are kept.
CACHE_SIZE = 8192

# ua-parser names mobile builds separately; Data Prep names them after the browser.
_AGENT_NAMES = {
    "Mobile Safari": "Safari",
    "Mobile Safari UI/WKWebView": "Safari",
    "Chrome Mobile": "Chrome",
    "Chrome Mobile iOS": "Chrome",
    "Chrome Mobile WebView": "Chrome Webview",
    "Firefox Mobile": "Firefox",
    "Firefox iOS": "Firefox",
    "Edge Mobile": "Edge",
    "Opera Mobile": "Opera",
}
_PHONE_OS = frozenset(
    {"iOS", "Android", "Windows Phone", "BlackBerry OS", "Symbian OS", "KaiOS", "Firefox OS"}
)
_DESKTOP_OS = frozenset(
    {
        "Windows",
        "Mac OS X",
        "Linux",
        "Ubuntu",
        "Chrome OS",
        "Fedora",
        "Debian",
        "FreeBSD",
        "OpenBSD",
        "NetBSD",
        "Solaris",
        "Mint",
        "Red Hat",
        "SUSE",
        "Arch Linux",
    }
)


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """What the eight ua_* functions return for one user agent (None: not known)."""

    os_name: str | None
    os_version: str | None
    os_version_major: str | None
    os_name_version: str | None
    agent_name: str | None
    agent_version: str | None
    agent_version_major: str | None
    device_class: str | None  # None only for NO_AGENT


#: What every ua_* function gives for a null user agent.
NO_AGENT = AgentInfo(None, None, None, None, None, None, None, None)


_resolver: Resolver | None = None


def prepare() -> Resolver:
    """Load uap-core's regexes (a noticeable moment) once: called when a mapping that uses a
    ua_* function is compiled, so that the first record does not pay for it."""
    global _resolver
    if _resolver is None:
        _resolver = BasicResolver(load_builtins())
    return _resolver


def _resolve(ua: str) -> PartialResult:
    return prepare()(ua, Domain.ALL)


def _version(*parts: str | None) -> str | None:
    present: list[str] = []
    for part in parts:
        if part is None or part == "":
            break
        present.append(part)
    return ".".join(present) or None


def agent_info(ua: str) -> AgentInfo:
    """Parse one user agent (cached; only its first MAX_USER_AGENT_CHARS characters)."""
    return _agent_info(ua[:MAX_USER_AGENT_CHARS] if len(ua) > MAX_USER_AGENT_CHARS else ua)


@lru_cache(maxsize=CACHE_SIZE)
def _agent_info(ua: str) -> AgentInfo:
    result = _resolve(ua)
    os_name = os_version = os_major = None
    if result.os is not None and result.os.family != "Other":
        os = result.os
        os_name, os_major = os.family, os.major
        os_version = _version(os.major, os.minor, os.patch, os.patch_minor)
    agent_name = agent_version = agent_major = None
    if result.user_agent is not None and result.user_agent.family != "Other":
        agent = result.user_agent
        agent_name = _AGENT_NAMES.get(agent.family, agent.family)
        agent_major = agent.major
        agent_version = _version(agent.major, agent.minor, agent.patch, agent.patch_minor)
    device = result.device
    return AgentInfo(
        os_name=os_name,
        os_version=os_version,
        os_version_major=f"{os_name} {os_major}" if os_name and os_major else None,
        os_name_version=f"{os_name} {os_version}" if os_name and os_version else None,
        agent_name=agent_name,
        agent_version=agent_version,
        agent_version_major=f"{agent_name} {agent_major}" if agent_name and agent_major else None,
        device_class=_device_class(
            device.family if device else None, device.brand if device else None, os_name
        ),
    )


def _device_class(family: str | None, brand: str | None, os_name: str | None) -> str:
    """Phone, Tablet, Desktop, Robot or Unknown, from ua-parser's device and OS families."""
    family = family or ""
    brand = brand or ""
    if family == "Spider" or brand == "Spider":
        return "Robot"
    if (
        family in ("iPad", "Kindle")
        or "Tablet" in family
        or brand.endswith("_Tablet")
        or family.startswith("Kindle")
    ):
        return "Tablet"
    if family in ("iPhone", "iPod") or os_name in _PHONE_OS:
        return "Phone"
    if family == "Mac" or os_name in _DESKTOP_OS:
        return "Desktop"
    return "Unknown"
