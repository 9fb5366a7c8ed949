# aep-connector container image: `aep-connector run` by default; also `check`, `map`, `emulator`.
#
#   docker build -t aep-connector .
#   docker run --rm aep-connector --version
#
# Two stages: the builder turns the project and all its dependencies into wheels (compilers are
# there in case a dependency has no wheel for the platform); the runtime stage installs only those
# wheels into a clean python:3.11-slim, with no compiler, no build tools and no pip cache, and runs
# as an unprivileged user with a fixed UID (10001, as the Helm chart's securityContext expects).
# The worker writes nothing to disk, so the root filesystem can be mounted read-only.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Metadata first, so that dependency wheels are cached until pyproject.toml changes.
COPY pyproject.toml README.md ./
# With the `tracing` extra, so that config.tracing.enabled works in the image (imported only then).
RUN mkdir connector && touch connector/__init__.py \
    && pip wheel --wheel-dir /wheels '.[tracing]' \
    && rm /wheels/aep_connector-*.whl
COPY connector ./connector
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    AEP_CONNECTOR_MAPPINGS_DIR=/etc/aep-connector/mappings \
    AEP_CONNECTOR_OPS__PORT=8080
# Install from the builder's wheels only (no index, nothing compiled here); the wheels are
# bind-mounted for this step and never become a layer of the image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels 'aep-connector[tracing]' \
    && groupadd --system --gid 10001 aep \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin aep \
    && mkdir -p /etc/aep-connector/mappings
USER 10001:10001
WORKDIR /tmp
# The ops port: /metrics (Prometheus), /healthz (liveness), /readyz (readiness).
EXPOSE 8080
# For `docker run` and Compose; Kubernetes ignores it and uses the chart's HTTP probes on the same
# endpoint. Commands other than `run` (e.g. `emulator`) serve no /healthz: override or disable it.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('AEP_CONNECTOR_OPS__PORT', '8080'), timeout=4)"]
ENTRYPOINT ["aep-connector"]
CMD ["run"]
