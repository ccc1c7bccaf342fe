# syntax=docker/dockerfile:1.7
# Three images from one file:
#   docker build --target operator -t ghcr.io/pilotage-dev/pilotage-operator:0.1.0 .
#   docker build --target server   -t ghcr.io/pilotage-dev/pilotage-server:0.1.0 .
#   docker build --target trainer  -t ghcr.io/pilotage-dev/pilotage-trainer:0.1.0 .
# Wheels are built in builder stages; the final stages only install them (no compiler,
# no pip cache, no source tree), run as UID 10001 and work on a read-only root filesystem
# (HOME and temporary files go to /tmp, an emptyDir in the chart).

# python:3.11.14-slim-bookworm, multi-architecture index, pinned by tag and digest.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

# Version of the pilotage wheel the final stages install (pyproject.toml's version;
# tests/chart/test_dockerfile.py keeps them equal).
ARG PILOTAGE_VERSION=0.1.0

# ---- wheels -------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS source
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pilotage ./pilotage

FROM source AS wheels-operator
RUN python -m pip wheel --no-cache-dir --prefer-binary --wheel-dir /wheels ".[operator]"

FROM source AS wheels-server
RUN python -m pip wheel --no-cache-dir --prefer-binary --wheel-dir /wheels ".[server]"

FROM source AS wheels-trainer
RUN python -m pip wheel --no-cache-dir --prefer-binary --wheel-dir /wheels ".[trainer]"

# ---- common runtime -----------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp
RUN groupadd --system --gid 10001 pilotage \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin pilotage
WORKDIR /tmp
ENTRYPOINT ["pilotage"]

# ---- final images -------------------------------------------------------------------
FROM runtime AS operator
ARG PILOTAGE_VERSION
RUN --mount=type=bind,from=wheels-operator,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels "pilotage[operator]==${PILOTAGE_VERSION}" \
    && python -m pip uninstall --yes pip setuptools wheel
USER 10001:10001
EXPOSE 8081
CMD ["operator"]

FROM runtime AS trainer
ARG PILOTAGE_VERSION
RUN --mount=type=bind,from=wheels-trainer,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels "pilotage[trainer]==${PILOTAGE_VERSION}" \
    && python -m pip uninstall --yes pip setuptools wheel
USER 10001:10001
CMD ["train", "--help"]

# Last, so that a plain `docker build .` gives the server (it also runs the router).
FROM runtime AS server
ARG PILOTAGE_VERSION
RUN --mount=type=bind,from=wheels-server,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels "pilotage[server]==${PILOTAGE_VERSION}" \
    && python -m pip uninstall --yes pip setuptools wheel
USER 10001:10001
EXPOSE 8080 9090
CMD ["serve", "--help"]
