"""Starting the worker as a process: logging, mappings, the ops server, signals."""

from __future__ import annotations

import signal
import sys
from types import FrameType

from connector.allocator import fix_mmap_threshold, settle_collector
from connector.cpu import pin_to_one_cpu
from connector.logs import configure, get_logger
from connector.mapping import CompiledMapping, MappingLoadError, TargetDefaults, load_mappings
from connector.metrics import Metrics
from connector.ops import OpsServer
from connector.preflight import security_warnings
from connector.settings import Settings, masked

log = get_logger("runner")

EXIT_CONFIG = 2


def load_worker_mappings(settings: Settings) -> list[CompiledMapping]:
    """Compile every mapping of the mappings directory, ready for the worker.

    Raises MappingLoadError listing every problem: invalid mappings, mappings with no
    connection to send to, an empty directory.
    """
    platform = settings.platform
    defaults = TargetDefaults(platform.connection_id, platform.ims_org_id)
    mappings = load_mappings(settings.mappings_dir, defaults, limits=settings.mapping.limits())
    problems = [
        f"{m.path}: no target.connectionId and platform.connection_id is not set"
        for m in mappings
        if m.connection_id is None
    ]
    if not mappings:
        problems.append(f"{settings.mappings_dir}: no mapping files")
    if problems:
        raise MappingLoadError(problems)
    return mappings


def run_worker(settings: Settings) -> int:
    """Run until stopped; returns the exit status."""
    from connector.worker import Worker

    configure(settings.ops.log_format, settings.ops.log_level)
    log.info("starting", extra={"fields": {"config": masked(settings)}})
    if not fix_mmap_threshold():
        log.debug("allocator left as it is (MALLOC_MMAP_THRESHOLD_ set, or not glibc)")
    if settings.ops.single_cpu:  # before the Kafka clients and the ops server start threads
        try:
            cpu = pin_to_one_cpu()
        except OSError as exc:
            log.warning("ops.single_cpu: affinity refused", extra={"fields": {"error": str(exc)}})
        else:
            if cpu is None:
                log.warning("ops.single_cpu: CPU affinity is not supported here")
            else:
                log.info("threads kept on one CPU", extra={"fields": {"cpu": cpu}})
    for warning in security_warnings(settings):
        log.warning(warning)
    try:
        mappings = load_worker_mappings(settings)
    except MappingLoadError as exc:
        for problem in exc.problems:
            print(f"invalid mapping: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    for mapping in mappings:  # what the check against the XDM schema did not refuse
        for warning in mapping.validator.warnings if mapping.validator else ():
            log.warning("mapping", extra={"fields": {"mapping": mapping.name, "warning": warning}})

    metrics = Metrics()
    worker = Worker(settings, mappings, metrics)
    ops = OpsServer(
        settings.ops.host, settings.ops.port, metrics, worker.liveness, worker.readiness
    )
    ops.start()
    log.info("ops server listening", extra={"fields": {"port": ops.port}})

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stop requested", extra={"fields": {"signal": signal.Signals(signum).name}})
        worker.stop_requested.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    settle_collector()  # what exists now lives as long as the process
    try:
        status = worker.run()
        if worker.halt_reason is not None and settings.ops.halt_linger_s > 0:
            # Let probes and scrapers see the halt (and why) before the process goes away.
            worker.stop_requested.wait(settings.ops.halt_linger_s)
        return status
    finally:
        ops.stop()
