#!/usr/bin/env bash
# The first start of a standby region's container (docker-compose.yml), run by its PID 1
# (latitude.region_container) as the postgres user when PGDATA holds no cluster yet; never again
# once it does: from then on the region's agent owns its role and configuration (after a
# failover it may be a primary, or a standby of another region).
#
# It clones the primary with pg_basebackup, streaming WAL through the region's physical
# replication slot (created on the primary by primary-init.sh), and lets pg_basebackup write the
# standby configuration (-R: standby.signal, primary_conninfo and primary_slot_name in
# postgresql.auto.conf); the settings and pg_hba.conf come with the copy.
#
# Its inputs are the DEPLOY_* variables docker-compose.yml sets for it; the supervisor passes
# them to this script alone, never to the agent or the keeper.
set -Eeuo pipefail

: "${PGDATA:?PGDATA must be set}"
: "${DEPLOY_PRIMARY_HOST:?DEPLOY_PRIMARY_HOST must name the host of the primary}"
: "${DEPLOY_SLOT_NAME:?DEPLOY_SLOT_NAME must name the replication slot of this region}"
: "${DEPLOY_REPLICATION_USER:?DEPLOY_REPLICATION_USER must be set}"
: "${DEPLOY_REPLICATION_PASSWORD:?DEPLOY_REPLICATION_PASSWORD must be set}"
primary_port="${DEPLOY_PRIMARY_PORT:-5432}"

if [[ -s $PGDATA/PG_VERSION ]]; then
    exit 0
fi
if [[ -e $PGDATA && -n $(ls -A "$PGDATA") ]]; then
    echo "standby-first-start: $PGDATA is not empty but holds no cluster; refusing to clone over it" >&2
    exit 1
fi

# The regions start side by side: the primary's container may still be making its cluster.
for _ in $(seq 300); do
    if pg_isready --quiet --host="$DEPLOY_PRIMARY_HOST" --port="$primary_port"; then
        break
    fi
    sleep 1
done

# Clone into a sibling directory and move it into place only when complete, so that an
# interrupted clone leaves no cluster behind and the next start simply tries again.
partial="$PGDATA.partial"
rm -rf -- "$partial"
echo "standby-first-start: cloning $DEPLOY_PRIMARY_HOST:$primary_port through slot $DEPLOY_SLOT_NAME"
PGPASSWORD="$DEPLOY_REPLICATION_PASSWORD" pg_basebackup \
    -h "$DEPLOY_PRIMARY_HOST" -p "$primary_port" -U "$DEPLOY_REPLICATION_USER" \
    -D "$partial" -R -X stream -S "$DEPLOY_SLOT_NAME" \
    --checkpoint=fast --no-password
chmod 0700 "$partial"
if [[ -e $PGDATA ]]; then
    rmdir -- "$PGDATA"
fi
mv -- "$partial" "$PGDATA"
