# aep-connector container image: `aep-connector run` by default; also `check`, `map`, `emulator`.
#
#   scripts/build-image                 # or: make image (docker when an engine answers, else buildah)
#   docker run --rm aep-connector:0.1.0 --version
#
# docs/container-image.md explains the build options (a local Debian base, a proxy's CA bundle),
# the tag scheme, and how to update the base image's digest and the dependency lock.
#
# Three stages. The builder downloads every dependency as a wheel from requirements.lock, each file
# checked against the lock's sha256 hashes and binary only (nothing is compiled, so no compiler is
# needed anywhere), then builds the project's own wheel from the copied sources. The wheels stage
# holds just those wheels. The runtime stage installs only them, bind-mounted from the wheels
# stage, with the hashes checked again; it has no compiler, no build tools and no pip cache, and
# runs as an unprivileged user with a fixed UID (10001, as the Helm chart's securityContext
# expects). The worker writes nothing to disk, so the root filesystem can be mounted read-only.
#
# A CA bundle for a TLS-intercepting proxy is passed as the build secret `ca-bundle` (mounted for
# the downloading step only, never a layer): scripts/build-image --ca-bundle FILE.

# The official Python 3.11 slim image on Debian bookworm, pinned by the digest of its multi-arch
# index (scripts/build-image --update-base-digest rewrites this line).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# Dependencies first, so that this layer is cached until a lock file changes. The build tools
# (setuptools, wheel) are locked too and go into a directory of their own, which shadows
# whatever versions the base image ships.
COPY requirements.lock requirements-build.lock ./
RUN --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && pip wheel --require-hashes --only-binary=:all: --no-deps --wheel-dir /wheels \
        -r requirements.lock \
    && pip install --require-hashes --only-binary=:all: --no-deps --target /opt/build-tools \
        -r requirements-build.lock \
    && cp requirements.lock /wheels/
# Then the project itself, from a clean copy of its sources: nothing built before this point can
# end up in its wheel.
COPY pyproject.toml README.md ./
COPY connector ./connector
RUN PYTHONPATH=/opt/build-tools \
    pip wheel --no-index --no-deps --no-build-isolation --wheel-dir /wheels/project . \
    && rm -rf build ./*.egg-info \
    && cd /wheels && sha256sum requirements.lock ./*.whl project/*.whl > SHA256SUMS

# The wheels alone, in a stage of one step for the runtime stage to mount: buildah (1.28) mounts a
# stale state of a multi-step stage whose steps all come from its cache (`from=builder` then
# lacks the project's wheel); a one-step stage has no earlier state to mount.
FROM scratch AS wheels
COPY --from=builder /wheels /wheels

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    AEP_CONNECTOR_MAPPINGS_DIR=/etc/aep-connector/mappings \
    AEP_CONNECTOR_OPS__PORT=8080
# Only when asked (scripts/build-image --ca-bundle FILE --trust-ca-in-image): the build's CA bundle
# joins the image's system trust store, for a runtime behind the same proxy.
ARG TRUST_BUILD_CA=0
# The list of the wheels' checksums (a few kB, kept as a record of what is installed). Copied, it
# makes the next step's cache key follow the wheels' content, which buildah's layer cache ignores
# for a bind mount (the image kept a stale package after a source change); and the step checks
# the mounted wheels against it.
COPY --from=wheels /wheels/SHA256SUMS /usr/share/aep-connector/wheels.sha256
# Install from the builder's wheels only: no index, nothing compiled, every dependency checked
# against the lock's hashes once more, then `pip check` for a consistent set. The wheels are
# bind-mounted for this step and never become a layer of the image.
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    --mount=type=secret,id=ca-bundle \
    (cd /wheels && sha256sum --check --quiet --strict /usr/share/aep-connector/wheels.sha256) \
    && pip install --no-index --find-links=/wheels --require-hashes --no-deps \
        -r /wheels/requirements.lock \
    && pip install --no-index --no-deps /wheels/project/aep_connector-*.whl \
    && pip check \
    && if [ "$TRUST_BUILD_CA" = 1 ] && [ -s /run/secrets/ca-bundle ]; then \
        cp /run/secrets/ca-bundle /usr/local/share/ca-certificates/aep-connector-build-ca.crt \
        && update-ca-certificates; \
    fi \
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
