"""The container image, built once per test session by scripts/build-image (buildah, on the local
Debian base that mmdebstrap makes: no container registry is needed).

Without buildah or mmdebstrap the image tests skip on a developer's machine, but fail when the
CI environment variable is set: CI installs both (.ci/run), so their absence there is a fault.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.report import measurement

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_IMAGE = REPO_ROOT / "scripts" / "build-image"
#: Cold, the build makes the Debian base (1.5-3 min) and downloads every dependency.
BUILD_TIMEOUT_S = 1500


@dataclass(frozen=True)
class BuiltImage:
    id: str
    size_bytes: int
    tags: tuple[str, ...]
    #: The certificate appended to the CA bundle the build was given: it must be in no layer.
    build_ca_marker: str


def require_tools() -> None:
    missing = [tool for tool in ("buildah", "mmdebstrap") if shutil.which(tool) is None]
    if not missing:
        return
    message = (
        f"the image tests need {' and '.join(missing)} (Debian/Ubuntu: apt-get install buildah "
        "mmdebstrap; .ci/run installs them)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {message}", pytrace=False)
    pytest.skip(message)


def cache_dir() -> Path:
    """As scripts/local-kafka and scripts/build-image have it."""
    explicit = os.environ.get("AEP_CONNECTOR_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aep-connector"


def marker_certificate() -> str:
    """A self-signed CA certificate (PEM) appended to the build's CA bundle, to look for in the
    image. The same one on every run: layers are reused between builds, so a marker leaked into
    one by an earlier build must still be recognised."""
    path = cache_dir() / "image-test-marker-ca.pem"
    if path.exists():
        return path.read_text(encoding="ascii")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new_certificate(), encoding="ascii")
    return path.read_text(encoding="ascii")


def new_certificate() -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aep-connector image test CA")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def build_ca_bundle(directory: Path, marker: str) -> Path:
    """The CA bundle pip here trusts (its configured one, else certifi's), plus the marker."""
    configured = os.environ.get("PIP_CERT")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.cert"],
        capture_output=True,
        text=True,
        check=False,
    )
    if not configured and done.returncode == 0 and done.stdout.strip():
        configured = done.stdout.strip()
    if not configured:
        import certifi

        configured = certifi.where()
    bundle = directory / "build-ca-bundle.pem"
    bundle.write_text(Path(configured).read_text(encoding="utf-8") + "\n" + marker)
    return bundle


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """The image, built from this checkout with a CA bundle (as behind a TLS proxy)."""
    require_tools()
    marker = marker_certificate()
    bundle = build_ca_bundle(tmp_path_factory.mktemp("image-build"), marker)
    command = [sys.executable, str(BUILD_IMAGE), "--engine", "buildah", "--local-base"]
    command += ["--ca-bundle", str(bundle)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"scripts/build-image took over {BUILD_TIMEOUT_S} s", pytrace=False)
    if done.returncode != 0:
        pytest.fail(
            f"scripts/build-image failed (exit {done.returncode}):\n{done.stderr[-6000:]}",
            pytrace=False,
        )
    facts = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    seconds = float(facts["BUILD_SECONDS"])
    size = int(facts["IMAGE_SIZE_BYTES"])
    measurement(
        "container image (scripts/build-image --local-base, buildah)",
        f"{size / 1e6:.0f} MB; built in {seconds:.0f} s, of which "
        f"{float(facts['BASE_SECONDS']):.0f} s for the Debian base (cached layers reused)",
    )
    return BuiltImage(facts["IMAGE_ID"], size, tuple(facts["IMAGE_TAGS"].split(",")), marker)
