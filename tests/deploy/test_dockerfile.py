"""The Dockerfile, checked as text (tests/image builds and runs it): multi-stage on a base pinned by
digest, dependencies from the hash-pinned lock, the project's wheel built from the copied sources
only, a final stage without compilers that installs only the builder's wheels, a fixed non-root
user matching the Helm chart, the aep-connector entrypoint, the ops port and a health check."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass, field

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.conftest import CHART, REPO

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
LOCK = REPO / "requirements.lock"
BUILD_LOCK = REPO / "requirements-build.lock"
PINNED_BASE = re.compile(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}")
COMPILERS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|make|cmake|cc|rustc|cargo)\b")


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base} has no {keyword}"
        return found[-1]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            assert match, line
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], match.group(1))
            stages.append(Stage(base, match.group(2)))
        elif not stages and keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append(Instruction(keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text(encoding="utf-8"))[1]


def exec_form(instruction: Instruction) -> list[str]:
    value = json.loads(instruction.args)
    assert isinstance(value, list), f"{instruction.keyword} is not in exec form"
    return [str(v) for v in value]


def test_multi_stage_on_python_3_11_slim_pinned_by_digest(stages: list[Stage]) -> None:
    args, _ = parse(DOCKERFILE.read_text(encoding="utf-8"))
    assert PINNED_BASE.fullmatch(args["PYTHON_IMAGE"]), args["PYTHON_IMAGE"]
    assert [s.name for s in stages] == ["builder", "wheels", "runtime"]
    assert stages[0].base == stages[-1].base == args["PYTHON_IMAGE"]
    assert stages[1].base == "scratch"


def test_the_runtime_mounts_the_wheels_from_a_one_step_stage(stages: list[Stage]) -> None:
    """buildah 1.28 bind-mounts a stale state of a multi-step stage when all its steps come from
    the cache (the project's wheel was missing whenever only the runtime stage was rebuilt);
    the runtime therefore mounts a stage whose only step copies the builder's /wheels."""
    wheels = stages[1]
    assert [(i.keyword, i.args) for i in wheels.instructions] == [
        ("COPY", "--from=builder /wheels /wheels")
    ]
    mounts = [i.args for i in stages[-1].all("RUN") if "type=bind" in i.args]
    assert mounts
    assert all("from=wheels,source=/wheels" in run for run in mounts)


def test_dependencies_come_from_the_hash_pinned_lock(stages: list[Stage]) -> None:
    builder = stages[0]
    downloads = [i.args for i in builder.all("RUN") if "-r requirements.lock" in i.args]
    assert downloads, "the builder downloads no dependencies"
    for run in downloads:
        assert "pip wheel --require-hashes" in run
        # Binary wheels only: nothing is compiled, so no compiler (nor unpinned build
        # dependencies of an sdist) is needed.
        assert "--only-binary=:all:" in run
    tools = [i.args for i in builder.all("RUN") if "requirements-build.lock" in i.args]
    assert tools
    assert all("--require-hashes" in run for run in tools)


def test_the_project_wheel_is_built_from_its_sources_only(stages: list[Stage]) -> None:
    """The image once carried an empty connector/__init__.py: a stub made to cache the
    dependency wheels, built into the project's wheel. Dependencies come from the lock now;
    nothing of the project exists in the builder before its sources are copied."""
    builder = stages[0]
    source_copy = next(
        n
        for n, i in enumerate(builder.instructions)
        if i.keyword == "COPY" and i.args.split()[0] == "connector"
    )
    before = builder.instructions[:source_copy]
    for instruction in before:
        assert "connector" not in instruction.args, (
            f"{instruction.keyword} {instruction.args}: the project before its sources"
        )
        if instruction.keyword == "RUN":
            assert "pip wheel ." not in instruction.args
    builds = [i.args for i in builder.all("RUN") if re.search(r"pip wheel .*\s\.(\s|$)", i.args)]
    assert len(builds) == 1, builds
    assert "--no-index" in builds[0], "the project's wheel must not fetch anything"
    lock_copy = next(n for n, i in enumerate(builder.instructions) if "requirements.lock" in i.args)
    assert lock_copy < source_copy, "the dependency layer must come before the sources"


def test_final_stage_installs_only_the_builders_wheels(stages: list[Stage]) -> None:
    final = stages[-1]
    runs = [i.args for i in final.all("RUN")]
    installs = [r for r in runs if "pip install" in r]
    assert installs, "the final stage installs nothing"
    for run in installs:
        assert "--no-index" in run, "the final stage must not fetch packages from an index"
        assert "from=wheels" in run
        assert "/wheels" in run
        assert "--require-hashes" in run
        assert "pip check" in run
    assert not final.all("ADD"), "no source tree in the final stage"
    # Only the wheels' checksum list is copied, before the install: buildah's layer cache ignores
    # what a bind mount holds, so without it a source change left the old package installed.
    copies = [i.args for i in final.all("COPY")]
    assert copies == ["--from=wheels /wheels/SHA256SUMS /usr/share/aep-connector/wheels.sha256"]
    keywords = [(i.keyword, i.args) for i in final.instructions]
    install = next(n for n, (k, a) in enumerate(keywords) if k == "RUN" and "pip install" in a)
    assert keywords.index(("COPY", copies[0])) < install
    assert "sha256sum --check" in keywords[install][1]
    checksums = stages[0].last("RUN").args
    assert "sha256sum requirements.lock ./*.whl project/*.whl > SHA256SUMS" in checksums


def test_no_compilers_in_the_final_stage(stages: list[Stage]) -> None:
    assert COMPILERS.search("apt-get install -y build-essential")  # the pattern itself works
    final = stages[-1]
    for instruction in final.instructions:
        if instruction.keyword == "RUN":
            assert "apt-get install" not in instruction.args
            assert not COMPILERS.search(instruction.args), instruction.args


def test_no_secret_or_proxy_setting_becomes_part_of_the_image(stages: list[Stage]) -> None:
    """The CA bundle for a TLS-intercepting proxy is a build secret (a mount), never an ARG, ENV
    or copied file, all of which would be kept in the image's layers or history."""
    forbidden = re.compile(r"PIP_CERT|CA_BUNDLE|PROXY|PASSWORD|TOKEN|SECRET", re.IGNORECASE)
    for stage in stages:
        for instruction in stage.instructions:
            if instruction.keyword in ("ARG", "ENV", "COPY", "ADD", "LABEL"):
                assert not forbidden.search(instruction.args), instruction.args
    mounts = [i.args for s in stages for i in s.all("RUN") if "type=secret" in i.args]
    assert mounts, "the CA bundle is not taken as a build secret"
    for run in mounts:
        assert "id=ca-bundle" in run
        assert "/run/secrets/ca-bundle" in run


def _pins(lock: str) -> dict[str, str]:
    """{name: version} of a pip-compile lock, every entry required to carry a hash."""
    entries = re.sub(r"\\\n\s*", " ", lock)
    pins: dict[str, str] = {}
    for line in entries.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})+)", line)
        assert match, f"not a hash-pinned requirement: {line[:120]}"
        pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def test_the_locks_satisfy_pyproject() -> None:
    """Regenerate with scripts/lock-deps when this fails (a dependency added or changed)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    for lock, declared in (
        (LOCK, project["project"]["dependencies"]),
        (BUILD_LOCK, project["build-system"]["requires"]),
    ):
        pins = _pins(lock.read_text(encoding="utf-8"))
        for text in declared:
            requirement = Requirement(text)
            name = canonicalize_name(requirement.name)
            assert name in pins, f"{lock.name} lacks {name}: run scripts/lock-deps"
            assert requirement.specifier.contains(pins[name], prereleases=True), (
                f"{lock.name} pins {name}=={pins[name]}, pyproject wants {text}: "
                "run scripts/lock-deps"
            )


def test_final_stage_runs_as_the_charts_non_root_user(stages: list[Stage]) -> None:
    final = stages[-1]
    user = final.last("USER").args
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), "a numeric UID lets Kubernetes verify runAsNonRoot"
    assert int(uid) > 0
    assert not gid or (gid.isdigit() and int(gid) > 0)
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert int(uid) == values["securityContext"]["runAsUser"]
    assert int(uid) == values["podSecurityContext"]["runAsUser"]
    keywords = [i.keyword for i in final.instructions]
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    created = " ".join(i.args for i in final.all("RUN"))
    assert f"--uid {uid}" in created


def test_entrypoint_command_and_ops_port(stages: list[Stage]) -> None:
    final = stages[-1]
    assert exec_form(final.last("ENTRYPOINT")) == ["aep-connector"]
    assert exec_form(final.last("CMD")) == ["run"]
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    port = values["config"]["ops"]["port"]
    assert final.last("EXPOSE").args.split() == [str(port)]
    env = " ".join(i.args for i in final.all("ENV"))
    assert f"AEP_CONNECTOR_OPS__PORT={port}" in env
    assert f"AEP_CONNECTOR_MAPPINGS_DIR={values['mappingsMountPath']}" in env


def test_health_check_probes_healthz(stages: list[Stage]) -> None:
    healthcheck = stages[-1].last("HEALTHCHECK").args
    command = healthcheck.split(" CMD ", 1)[1]
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    assert "/healthz" in argv[2]
    compile(argv[2], "HEALTHCHECK", "exec")


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified to what .dockerignore uses here: the last match wins."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, f"**/{pattern}") for p in prefixes
        ):
            ignored = not negate
    return ignored


def test_build_context_has_what_the_builder_copies(stages: list[Stage]) -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for excluded in (".git", ".venv", "tests", ".local"):
        assert _ignored(excluded, patterns), f"{excluded} should stay out of the build context"
    for copy in stages[0].all("COPY"):
        *sources, _destination = copy.args.split()
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: no such file in the repository"
            assert not _ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
    copied = {s for c in stages[0].all("COPY") for s in c.args.split()[:-1]}
    assert {"pyproject.toml", "README.md", "connector", "requirements.lock"} <= copied
    assert "requirements-build.lock" in copied
