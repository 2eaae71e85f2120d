# syntax=docker/dockerfile:1
#
# One image for latitude's processes: the coordinator (`latitude-coordinator`), the `latitude` CLI,
# and a region's container (docker-compose.yml): PostgreSQL 15, its fence keeper and its agent
# under `python -m latitude.region_container` as PID 1 (run as root, which hands every program
# to the postgres user). They share one container because the hard fence stops the postmaster
# with signals and a REJOIN starts it again (pg_ctl, pg_rewind, pg_basebackup): the agent and
# the keeper must see its processes and own its data directory.
#
#   docker build -t latitude:local .
#
# The base image is an argument (docker-compose.yml passes LATITUDE_PYTHON_IMAGE) so that a
# mirror's copy can stand in for it; by default it is Docker Hub's.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The postgres user gets uid/gid 999, the ids the official postgres image uses, so that a PGDATA
# volume made by that image keeps its owner. It is created before the packages are installed so
# that postgresql-common adopts it instead of picking its own ids. The coordinator runs as the
# unprivileged `latitude` user.
RUN set -eux; \
    groupadd --system --gid 999 postgres; \
    useradd --system --uid 999 --gid postgres --home-dir /var/lib/postgresql \
        --shell /bin/bash postgres; \
    mkdir -p /var/lib/postgresql; \
    chown postgres:postgres /var/lib/postgresql; \
    groupadd --system --gid 10001 latitude; \
    useradd --system --uid 10001 --gid latitude --create-home --home-dir /home/latitude \
        --shell /usr/sbin/nologin latitude

# Debian bookworm ships PostgreSQL 15. postgresql-common would create and start a "main" cluster on
# install; the image must hold binaries only (a region's first start makes its cluster in the
# volume), so cluster creation is switched off first.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends postgresql-common; \
    sed -ri 's/#(create_main_cluster) .*$/\1 = false/' /etc/postgresql-common/createcluster.conf; \
    apt-get install -y --no-install-recommends postgresql-15 postgresql-client-15; \
    rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/lib/postgresql/15/bin:$PATH

# Only what the package needs, listed one by one: there is no .dockerignore, and the work tree
# holds a virtualenv and git history that must not end up in the image.
WORKDIR /tmp/latitude-src
COPY pyproject.toml README.md ./
COPY latitude ./latitude
COPY agent ./agent
COPY coordinator ./coordinator
RUN set -eux; \
    pip install .; \
    for program in latitude latitude-agent latitude-coordinator; do \
        command -v "$program" >/dev/null || { echo "console script $program is missing" >&2; exit 1; }; \
    done; \
    python -c "import grpc_health.v1.health_pb2"
WORKDIR /home/latitude
RUN rm -rf /tmp/latitude-src

# No HEALTHCHECK here: the same image runs regions (their agents) and coordinators, which serve
# grpc.health.v1 on different ports. docker-compose.yml gives each service its health check, and
# runs the regions as root (their PID 1 drops to postgres for every program).
USER latitude
CMD ["latitude", "--help"]
