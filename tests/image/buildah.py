"""Commands run inside the built image with `buildah run --isolation chroot` (podman run is refused
in this sandbox: its runtime cannot set rlimits here). Chroot isolation shares the host's network
and process table, so a server in the image is reached on 127.0.0.1 and its process is visible
(and signalled) from the tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def buildah(*args: str, timeout_s: float = 120) -> str:
    done = subprocess.run(
        ["buildah", *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"buildah {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def image_config(image_id: str) -> dict[str, Any]:
    """The image's Docker-format configuration (User, Entrypoint, Cmd, Healthcheck, Env, ...)."""
    facts = json.loads(buildah("inspect", "--type", "image", image_id))
    config: dict[str, Any] = facts["Docker"]["config"]
    return config


@dataclass
class InImageProcess:
    """A long-running command in a working container: the `buildah run` process on the host and,
    once started, the command's own process (a descendant, in the same process group)."""

    popen: subprocess.Popen[bytes]
    log_file: Path
    argv: Sequence[str]

    def output(self) -> str:
        return self.log_file.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def command_pid(self) -> int | None:
        """The pid of the command itself (buildah run forks a runtime that forks it)."""
        want = list(self.argv[1:])
        for pid in _descendants(self.popen.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
            except OSError:
                continue
            args = [part.decode(errors="replace") for part in cmdline]
            # The entry point runs as `python /path/to/aep-connector ARGS`; its helper process
            # (buildah-chroot-exec) carries the same arguments, so skip that one.
            if args and "buildah" not in args[0] and args[-len(want) :] == want:
                return pid
        return None

    def uid(self, pid: int) -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
        raise AssertionError(f"no Uid line for pid {pid}")

    def signal_command(self, signum: int) -> None:
        pid = self.command_pid()
        assert pid is not None, f"the command's process is gone:\n{self.output()[-3000:]}"
        os.kill(pid, signum)

    def wait_exit(self, timeout_s: float = 60) -> int:
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"did not exit within {timeout_s} s:\n{self.output()[-3000:]}"
            ) from None


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    pending = [root]
    while pending:
        pid = pending.pop()
        for child in children.get(pid, []):
            found.append(child)
            pending.append(child)
    return found


class WorkingContainer:
    """One `buildah from` container of the image; commands run in it as the image's user."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _run_args(self, env: Mapping[str, str], volumes: Sequence[tuple[Path, str]]) -> list[str]:
        args = ["buildah", "run", "--isolation", "chroot", "--network", "host"]
        for key, value in env.items():
            args += ["--env", f"{key}={value}"]
        for source, target in volumes:
            args += ["--volume", f"{source}:{target}:ro"]
        return [*args, self.name, "--"]

    def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        volumes: Sequence[tuple[Path, str]] = (),
        timeout_s: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._run_args(env or {}, volumes), *argv],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    @contextmanager
    def start(
        self,
        argv: Sequence[str],
        log_file: Path,
        env: Mapping[str, str] | None = None,
        volumes: Sequence[tuple[Path, str]] = (),
    ) -> Iterator[InImageProcess]:
        """Run `argv` until the block ends; then kill whatever of it is left (its process
        group: buildah, its runtime and the command)."""
        with log_file.open("ab") as log:
            popen = subprocess.Popen(
                [*self._run_args(env or {}, volumes), *argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            yield InImageProcess(popen, log_file, argv)
        finally:
            with suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(timeout=30)


@contextmanager
def working_container(image_id: str) -> Iterator[WorkingContainer]:
    name = buildah("from", "--pull=never", image_id).strip()
    try:
        yield WorkingContainer(name)
    finally:
        subprocess.run(["buildah", "rm", name], capture_output=True, check=False)


@contextmanager
def mounted_root(image_id: str) -> Iterator[Path]:
    """The image's root filesystem, mounted read-only-by-convention on the host."""
    with working_container(image_id) as container:
        root = Path(buildah("mount", container.name).strip())
        try:
            yield root
        finally:
            subprocess.run(["buildah", "umount", container.name], capture_output=True, check=False)
