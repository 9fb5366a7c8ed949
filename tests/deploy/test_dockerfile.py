"""The Dockerfile, checked as text (no Docker engine here to build it): multi-stage, a final stage
without compilers that installs only the builder's wheels, a fixed non-root user matching the Helm
chart, the aep-connector entrypoint, the ops port and a health check on /healthz."""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field

import pytest
import yaml

from tests.deploy.conftest import CHART, REPO

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
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


def test_multi_stage_on_python_3_11_slim(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    assert all(s.base == "python:3.11-slim" for s in stages)
    assert stages[0].name == "builder"


def test_final_stage_installs_only_the_builders_wheels(stages: list[Stage]) -> None:
    final = stages[-1]
    runs = [i.args for i in final.all("RUN")]
    installs = [r for r in runs if "pip install" in r]
    assert installs, "the final stage installs nothing"
    for run in installs:
        assert "--no-index" in run, "the final stage must not fetch packages from an index"
        assert "from=builder" in run
        assert "/wheels" in run
    assert not final.all("COPY"), "no source tree in the final stage"
    assert not final.all("ADD"), "no source tree in the final stage"
    builder_runs = " ".join(i.args for i in stages[0].all("RUN"))
    assert "pip wheel" in builder_runs


def test_no_compilers_in_the_final_stage(stages: list[Stage]) -> None:
    final = stages[-1]
    for instruction in final.instructions:
        if instruction.keyword == "RUN":
            assert "apt-get install" not in instruction.args
            assert not COMPILERS.search(instruction.args), instruction.args
    # ...whereas the builder is where they belong (checked so the regex is known to match).
    assert any(COMPILERS.search(i.args) for i in stages[0].all("RUN"))


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
    assert {"pyproject.toml", "README.md", "connector"} <= copied
