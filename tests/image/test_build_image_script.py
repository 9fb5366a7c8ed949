"""scripts/build-image without building: the tag it gives (the chart's default image), how it
passes a CA bundle, which CA bundle it picks up from pip's configuration, and how
--update-base-digest rewrites the Dockerfile's pin. Fast; no container engine needed."""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import re
import stat
from pathlib import Path
from types import ModuleType

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "helm" / "aep-connector"


def load_script() -> ModuleType:
    path = REPO_ROOT / "scripts" / "build-image"
    loader = importlib.machinery.SourceFileLoader("build_image", str(path))
    spec = importlib.util.spec_from_loader("build_image", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return load_script()


def test_default_tag_is_the_charts_default_image(script: ModuleType) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert values["image"]["tag"] == ""  # so the chart deploys its appVersion
    assert script.default_tag() == f"{values['image']['repository']}:{chart['appVersion']}"


def test_a_ca_bundle_is_a_build_secret_and_trusted_only_when_asked(
    script: ModuleType, tmp_path: Path
) -> None:
    bundle = tmp_path / "proxy-ca.pem"
    for engine in ("docker", "buildah"):
        command = script.build_command(engine, None, bundle, False, ["t:1"], tmp_path / "iid")
        assert f"id=ca-bundle,src={bundle}" in command
        assert command[command.index(f"id=ca-bundle,src={bundle}") - 1] == "--secret"
        assert not any("TRUST_BUILD_CA" in part for part in command)
        assert [part for part in command if str(bundle) in part] == [
            f"id=ca-bundle,src={bundle}"
        ], "the bundle's path may only reach the build as a secret"
        trusted = script.build_command(engine, None, bundle, True, ["t:1"], tmp_path / "iid")
        assert "TRUST_BUILD_CA=1" in trusted
        plain = script.build_command(engine, None, None, False, ["t:1"], tmp_path / "iid")
        assert "--secret" not in plain


def test_buildah_keeps_the_healthcheck_and_isolates_with_chroot(
    script: ModuleType, tmp_path: Path
) -> None:
    command = script.build_command("buildah", "base:1", None, False, ["t:1"], tmp_path / "iid")
    assert command[:2] == ["buildah", "build"]
    assert command[command.index("--format") + 1] == "docker"
    assert command[command.index("--isolation") + 1] == "chroot"
    assert "PYTHON_IMAGE=base:1" in command


def test_pip_cert_wins_over_pip_configuration(
    script: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "pip.conf"
    config.write_text("[global]\ncert = /from/config.pem\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    monkeypatch.delenv("PIP_CERT", raising=False)
    assert script.pip_configured_cert() == Path("/from/config.pem")
    monkeypatch.setenv("PIP_CERT", "/from/env.pem")
    assert script.pip_configured_cert() == Path("/from/env.pem")


def test_update_base_digest_pins_what_the_registry_serves(
    script: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a stand-in skopeo that prints a manifest list, the Dockerfile's pin becomes the
    sha256 of exactly those bytes, the tag is kept, and nothing else in the file changes."""
    manifest = b'{"schemaVersion":2,"manifests":[]}'
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "manifest.json").write_bytes(manifest)
    fake = bin_dir / "skopeo"
    fake.write_text(
        f'#!/bin/sh\necho "$@" > {bin_dir}/args\ncat {bin_dir}/manifest.json\n', encoding="utf-8"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    dockerfile = tmp_path / "Dockerfile"
    original = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
    dockerfile.write_text(original, encoding="utf-8")
    monkeypatch.setattr(script, "DOCKERFILE", dockerfile)

    script.update_base_digest()

    updated = dockerfile.read_text(encoding="utf-8")
    expected = "sha256:" + hashlib.sha256(manifest).hexdigest()
    assert f"ARG PYTHON_IMAGE=python:3.11-slim-bookworm@{expected}\n" in updated
    old_line = re.search(r"^ARG PYTHON_IMAGE=.*$", original, re.MULTILINE)
    assert old_line is not None
    assert updated.replace(f"python:3.11-slim-bookworm@{expected}", "X") == original.replace(
        old_line.group(0).removeprefix("ARG PYTHON_IMAGE="), "X"
    )
    assert (bin_dir / "args").read_text().split() == [
        "inspect",
        "--raw",
        "docker://python:3.11-slim-bookworm",
    ]


def test_a_digest_must_be_a_sha256(script: ModuleType) -> None:
    text = "ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:" + "0" * 64 + "\n"
    with pytest.raises(SystemExit):
        script.pin_base_digest(text, "latest")
    assert script.pin_base_digest(text, "sha256:" + "1" * 64).endswith("1" * 64 + "\n")


def test_without_an_engine_it_says_what_to_install(
    script: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SystemExit, match="apt-get install buildah"):
        script.choose_engine("auto")
