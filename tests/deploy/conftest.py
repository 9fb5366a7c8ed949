"""Fixtures of the deployment tests: the Helm CLI (built once by scripts/install-helm and cached
outside the clone) and helpers that render the chart offline with `helm template`."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "aep-connector"
CI_DIR = CHART / "ci"
#: Every scenario under ci/, by its short name ("minimal" for ci/minimal-values.yaml).
SCENARIOS = sorted(p.name.removesuffix("-values.yaml") for p in CI_DIR.glob("*-values.yaml"))
RELEASE = "rel"
NAMESPACE = "pipeline"
#: The Kubernetes version `helm template` renders for (Capabilities.KubeVersion).
KUBE_VERSION = "1.30.0"
#: The first build of Helm takes minutes on two cores; later runs reuse the cached binary.
HELM_INSTALL_TIMEOUT_S = 1200


@pytest.fixture(scope="session")
def helm() -> Path:
    """The pinned Helm CLI, built with `go install` on first use and cached between runs."""
    try:
        done = subprocess.run(
            [str(REPO / "scripts" / "install-helm")],
            capture_output=True,
            text=True,
            timeout=HELM_INSTALL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"scripts/install-helm took over {HELM_INSTALL_TIMEOUT_S} s", pytrace=False)
    if done.returncode != 0:
        pytest.fail(
            f"scripts/install-helm failed (exit {done.returncode}); it needs Go on PATH and the "
            f"Go module proxy:\n{done.stderr[-3000:]}",
            pytrace=False,
        )
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path.is_file(), f"install-helm printed {path}, which is not a file"
    return path


def scenario_file(name: str) -> Path:
    return CI_DIR / f"{name}-values.yaml"


@dataclass
class Rendered:
    """The manifests of one `helm template` run."""

    text: str
    docs: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.of_kind(kind)
        assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
        return found[0]

    @property
    def mapping_configmaps(self) -> list[dict[str, Any]]:
        """The ConfigMaps of mapping files (not the Grafana dashboard's)."""
        return [c for c in self.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-mappings")]

    @property
    def kinds(self) -> set[str]:
        return {d["kind"] for d in self.docs}

    @property
    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    @property
    def pod(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.deployment["spec"]["template"]
        return spec

    @property
    def container(self) -> dict[str, Any]:
        containers = self.pod["spec"]["containers"]
        assert [c["name"] for c in containers] == ["worker"]
        container: dict[str, Any] = containers[0]
        return container

    @property
    def env(self) -> dict[str, dict[str, Any]]:
        """The worker's environment entries by name (a duplicate name is an error)."""
        entries = self.container["env"]
        names = [e["name"] for e in entries]
        assert len(names) == len(set(names)), f"duplicate env entries: {names}"
        return {e["name"]: e for e in entries}

    @property
    def annotations(self) -> dict[str, str]:
        found: dict[str, str] = self.pod["metadata"].get("annotations") or {}
        return found


class Helm:
    """Runs the pinned Helm CLI against the chart, offline."""

    def __init__(self, binary: Path) -> None:
        self.binary = binary

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, timeout=120, check=False
        )

    def _template_args(self, values: Sequence[Path], sets: Sequence[str]) -> list[str]:
        args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
        args += ["--kube-version", KUBE_VERSION]
        for path in values:
            args += ["--values", str(path)]
        for assignment in sets:
            args += ["--set", assignment]
        return args

    def template(self, *values: Path, sets: Sequence[str] = ()) -> Rendered:
        done = self.run(*self._template_args(values, sets))
        assert done.returncode == 0, f"helm template failed:\n{done.stderr}"
        docs = [d for d in yaml.safe_load_all(done.stdout) if d]
        return Rendered(done.stdout, docs)

    def template_error(self, *values: Path, sets: Sequence[str] = ()) -> str:
        """Render expecting failure; return Helm's error output."""
        done = self.run(*self._template_args(values, sets))
        assert done.returncode != 0, "helm template succeeded but was expected to fail"
        return done.stderr

    def scenario(self, name: str, sets: Sequence[str] = ()) -> Rendered:
        return self.template(scenario_file(name), sets=sets)


@pytest.fixture(scope="session")
def chart(helm: Path) -> Helm:
    return Helm(helm)
