# syntax=docker/dockerfile:1
# The image of every Emulsion service; SERVICE names which (api, controller, processor,
# janitor). Build it from the repository root, which holds the uv workspace and its lock:
#   docker build --build-arg SERVICE=api -t emulsion-api .
# tests/charts/test_dockerfiles.py runs this file's `uv sync` on the same build context
# (filtered by .dockerignore) for every service, so each image gets exactly the wheels
# the test installs.

# Both stages use the same interpreter, so the virtualenv's python links stay valid.
ARG PYTHON_IMAGE=python:3.13-slim-bookworm

# -- build: install the service and exactly its locked dependencies as wheels ---------
FROM ${PYTHON_IMAGE} AS build
ARG SERVICE
ARG UV_VERSION=0.13.9
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/emulsion
# Where no registry is reachable from inside the build (`make images`), /offline is
# bind-mounted with uv itself and a uv cache the host filled with every locked wheel.
RUN if [ -x /offline/uv ]; then cp /offline/uv /usr/local/bin/uv; \
    else python -m pip install --no-cache-dir "uv==${UV_VERSION}"; fi
WORKDIR /src
COPY . .
# --locked: fail rather than resolve anything uv.lock does not say; --no-editable: the
# workspace members are installed as wheels, so the runtime stage needs no sources.
# The service's console script is linked under one name, so the entrypoint (exec form,
# where no variable is expanded) is the same for every service.
RUN test -n "${SERVICE}" \
    && if [ -d /offline/uv-cache ]; then export UV_CACHE_DIR=/offline/uv-cache UV_OFFLINE=1; fi \
    && uv sync --locked --no-dev --no-editable --package "emulsion-${SERVICE}" \
    && ln -s "emulsion-${SERVICE}" /opt/emulsion/bin/emulsion-service
# The API serves the browser uploader. Its bundle is built on the host by `make web`
# (image builds reach no package registry), so an API image without it fails here, now,
# rather than answering 503 at /upload in production.
RUN if [ "${SERVICE}" = api ]; then \
        test -f clients/web/dist/index.html \
            || { echo "clients/web/dist is missing: run make web before building the api image" >&2; exit 1; }; \
        cp -r clients/web/dist /opt/emulsion/web; \
    fi

# -- runtime: the virtualenv only; no uv, pip, compilers or sources --------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG SERVICE
# A Debian base (make images) has no pip to remove.
RUN if python -m pip --version >/dev/null 2>&1; then python -m pip uninstall --yes pip; fi \
    && groupadd --system --gid 10001 emulsion \
    && useradd --system --uid 10001 --gid emulsion --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin emulsion
COPY --from=build /opt/emulsion /opt/emulsion
# OTEL_SERVICE_NAME is a default; every other OTEL_* variable (exporter endpoint,
# sampler, resource attributes) is read from the environment the chart sets.
ENV PATH=/opt/emulsion/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OTEL_SERVICE_NAME=emulsion-${SERVICE} \
    EMULSION_WEB_DIR=/opt/emulsion/web \
    EMULSION_HTTP_PORT=8080
USER 10001:10001
EXPOSE 8080
# Exec form: the service is PID 1 and receives SIGTERM itself, for its graceful drain.
ENTRYPOINT ["emulsion-service"]
