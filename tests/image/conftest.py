"""The container image, built once per test session by scripts/build-image (buildah, on the local
Debian base that mmdebstrap makes: no container registry is needed). The build starts in the
background as soon as collection shows an image test will run.

Without buildah or mmdebstrap the image tests skip on a developer's machine, but fail when the
CI environment variable is set: CI installs both (.ci/run), so their absence there is a fault.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import signal
import subprocess
import sys
import tempfile
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


class BackgroundBuild:
    """scripts/build-image running beside the other tests: cold, it spends minutes downloading
    Debian packages and wheels, which would otherwise add to the suite's time."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="aep-connector-image-build-"))
        self.marker = marker_certificate()
        bundle = build_ca_bundle(self.directory, self.marker)
        command = [sys.executable, str(BUILD_IMAGE), "--engine", "buildah", "--local-base"]
        command += ["--ca-bundle", str(bundle)]
        self.stdout = self.directory / "stdout"
        self.stderr = self.directory / "stderr"
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.process = subprocess.Popen(command, stdout=out, stderr=err, start_new_session=True)

    def wait(self) -> BuiltImage:
        try:
            returncode = self.process.wait(timeout=BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"scripts/build-image took over {BUILD_TIMEOUT_S} s", pytrace=False)
        errors = self.stderr.read_text(errors="replace")
        if returncode != 0:
            pytest.fail(
                f"scripts/build-image failed (exit {returncode}):\n{errors[-6000:]}",
                pytrace=False,
            )
        output = self.stdout.read_text()
        facts = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
        seconds = float(facts["BUILD_SECONDS"])
        size = int(facts["IMAGE_SIZE_BYTES"])
        measurement(
            "container image (scripts/build-image --local-base, buildah, beside other tests)",
            f"{size / 1e6:.0f} MB; built in {seconds:.0f} s, of which "
            f"{float(facts['BASE_SECONDS']):.0f} s for the Debian base (cached layers reused)",
        )
        tags = tuple(facts["IMAGE_TAGS"].split(","))
        return BuiltImage(facts["IMAGE_ID"], size, tags, self.marker)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


_build: BackgroundBuild | None = None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the build as soon as the session is known to run an image test."""
    global _build
    wanted = any(item.get_closest_marker("image") for item in session.items)
    tools = all(shutil.which(tool) for tool in ("buildah", "mmdebstrap"))
    if wanted and tools and _build is None:
        _build = BackgroundBuild()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _build is not None:
        _build.stop()


@pytest.fixture(scope="session")
def image() -> BuiltImage:
    """The image, built from this checkout with a CA bundle (as behind a TLS proxy), once."""
    global _build
    require_tools()
    if _build is None:
        _build = BackgroundBuild()
    return _build.wait()
