# syntax=docker/dockerfile:1
#
# The Cluster Week dispatcher as a container: `dispatcher run` (scheduler + HTTP endpoints).
#
#   docker build -t clusterwoche/dispatcher .
#   docker run --rm -p 8080:8080 --env-file config/dispatcher.env \
#       -v "$PWD/config:/app/config:ro" -v "$PWD/templates:/app/templates:ro" \
#       -v dispatcher-var:/app/var clusterwoche/dispatcher
#
# Mount points (all optional; the image carries the repository's versions):
#   /app/config     the campaign file (DISPATCHER_CAMPAIGN_FILE=config/campaign.yaml); bind-mount
#                   read-only: `run` reloads it when it changes and on SIGHUP
#   /app/templates  the Jinja2 templates (DISPATCHER_TEMPLATES_DIR=templates); bind-mount read-only
#   /app/var        writable by the `dispatcher` user (uid 10001): outbox files and, without
#                   DISPATCHER_DATABASE_URL, the SQLite ledger (one process only): use a volume
# Secrets: environment (--env-file), or one file per variable in /run/secrets (Docker secrets).

# --- builder: a wheel of the project and wheels of its runtime dependencies (no test extras) ---
FROM python:3.11-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY dispatcher ./dispatcher
RUN python -m pip wheel --wheel-dir /wheels .

# --- runtime: the installed wheels, the templates and config; no compilers, no build tools -----
FROM python:3.11-slim-bookworm AS runtime
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    DISPATCHER_HTTP_HOST=0.0.0.0 \
    DISPATCHER_HTTP_PORT=8080 \
    DISPATCHER_LOG_FORMAT=json
RUN groupadd --system --gid 10001 dispatcher \
    && useradd --system --uid 10001 --gid dispatcher --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin dispatcher
# Install from the builder's wheels only (--no-index): nothing is compiled or fetched here,
# and the wheels themselves never become a layer of this image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels cluster-week-dispatcher \
    && dispatcher --help >/dev/null
WORKDIR /app
COPY templates ./templates
COPY config ./config
RUN mkdir -p var/outbox && chown -R dispatcher:dispatcher var
USER dispatcher:dispatcher
EXPOSE 8080
STOPSIGNAL SIGTERM
# Liveness from inside the container; slim images have no curl, so Python's urllib asks.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('DISPATCHER_HTTP_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["dispatcher"]
CMD ["run"]
