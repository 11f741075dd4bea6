# holdwatch: one image for every role. ENTRYPOINT is the `holdwatch` command; the role is the
# argument (worker, notifier, topics create, replay ..., simulate ...). See docker-compose.yml.
#
# Base image pinned by exact version tag. Pinning by digest (python:3.11.7-slim-bookworm@sha256:...)
# is better still; add the digest your registry reports (`docker buildx imagetools inspect`), it
# could not be verified offline when this file was written.
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

# --- build: a virtualenv with holdwatch and its pinned runtime dependencies ----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/holdwatch
COPY pyproject.toml constraints.txt README.md ./
COPY schemas ./schemas
COPY alerting ./alerting
COPY streams ./streams
# The developer tools (local broker, simulator, demo): `holdwatch simulate` runs in the image too.
COPY devtools ./devtools
# Runtime dependencies only (no [dev] extra), at the versions the tests ran with.
RUN /opt/holdwatch/bin/pip install --constraint constraints.txt . \
 && /opt/holdwatch/bin/holdwatch --help >/dev/null

# --- runtime: slim, non-root ---------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/holdwatch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOLDWATCH_HOME=/var/lib/holdwatch \
    HOLDWATCH_METRICS_PORT=9108
RUN groupadd --system --gid 10001 holdwatch \
 && useradd --system --uid 10001 --gid holdwatch --home-dir /var/lib/holdwatch --no-create-home \
        --shell /usr/sbin/nologin holdwatch \
 && mkdir -p /var/lib/holdwatch/state /var/lib/holdwatch/replay \
 && chown -R holdwatch:holdwatch /var/lib/holdwatch
COPY --from=build /opt/holdwatch /opt/holdwatch
# Table state (RocksDB) lives under /var/lib/holdwatch/state/<HOLDWATCH_APP_ID>; it is a cache of
# the changelog topics, so a lost volume costs a restore from Kafka, never data.
VOLUME ["/var/lib/holdwatch/state"]
WORKDIR /var/lib/holdwatch
USER 10001:10001
EXPOSE 9108
ENTRYPOINT ["holdwatch"]
CMD ["worker"]
