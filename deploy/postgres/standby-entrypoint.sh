#!/usr/bin/env bash
# Entrypoint of a standby region's PostgreSQL container (official postgres:15 image).
#
# On the first start, with an empty PGDATA, it clones the primary with pg_basebackup, streaming
# WAL through the region's physical replication slot (created on the primary by primary-init.sh),
# and lets pg_basebackup write the standby configuration (-R: standby.signal, primary_conninfo and
# primary_slot_name in postgresql.auto.conf). Then, and on every later start, it execs the
# container's command (postgres). Once the data directory exists this script never touches it:
# after a failover the agent owns the region's role and configuration.
#
# Its inputs are the DEPLOY_* variables docker-compose.yml sets for this script alone; no latitude
# program reads them.
set -Eeuo pipefail

: "${PGDATA:?PGDATA must be set}"
: "${DEPLOY_PRIMARY_HOST:?DEPLOY_PRIMARY_HOST must name the host of the primary}"
: "${DEPLOY_SLOT_NAME:?DEPLOY_SLOT_NAME must name the replication slot of this region}"
: "${DEPLOY_REPLICATION_USER:?DEPLOY_REPLICATION_USER must be set}"
: "${DEPLOY_REPLICATION_PASSWORD:?DEPLOY_REPLICATION_PASSWORD must be set}"
primary_port="${DEPLOY_PRIMARY_PORT:-5432}"

if [[ $# -eq 0 ]]; then
    set -- postgres
fi

# The container starts as root (as the image's own entrypoint does): make PGDATA belong to the
# postgres user, then run the rest of this script as that user.
if [[ $(id -u) -eq 0 ]]; then
    mkdir -p "$PGDATA"
    # The parent too: the clone is made beside PGDATA and then moved into place.
    chown postgres:postgres "$PGDATA" "$(dirname "$PGDATA")"
    chmod 0700 "$PGDATA"
    exec gosu postgres "${BASH_SOURCE[0]}" "$@"
fi

if [[ ! -s $PGDATA/PG_VERSION ]]; then
    if [[ -n $(ls -A "$PGDATA") ]]; then
        echo "standby-entrypoint: $PGDATA is not empty but holds no cluster; refusing to clone over it" >&2
        exit 1
    fi

    # depends_on waits for the primary to be healthy; this covers a restart of this container alone.
    for _ in $(seq 60); do
        if pg_isready --quiet --host="$DEPLOY_PRIMARY_HOST" --port="$primary_port"; then
            break
        fi
        sleep 1
    done

    # Clone into a sibling directory and move it into place only when complete, so that an
    # interrupted clone leaves PGDATA empty and the next start simply tries again.
    partial="$PGDATA.partial"
    rm -rf -- "$partial"
    echo "standby-entrypoint: cloning $DEPLOY_PRIMARY_HOST:$primary_port through slot $DEPLOY_SLOT_NAME"
    PGPASSWORD="$DEPLOY_REPLICATION_PASSWORD" pg_basebackup \
        -h "$DEPLOY_PRIMARY_HOST" -p "$primary_port" -U "$DEPLOY_REPLICATION_USER" \
        -D "$partial" -R -X stream -S "$DEPLOY_SLOT_NAME" \
        --checkpoint=fast --no-password
    chmod 0700 "$partial"
    rmdir -- "$PGDATA"
    mv -- "$partial" "$PGDATA"
fi

exec "$@"
