#!/usr/bin/env bash
# Runs once, on the first start of the PostgreSQL container of the region that starts as primary
# (mounted into the official image's /docker-entrypoint-initdb.d/, which runs it as the postgres
# user against the temporary, socket-only server the image starts for initialisation).
#
# It creates the replication role, lets that role connect for replication from the compose network,
# and creates one physical replication slot per standby region. The slot names come from
# DEPLOY_STANDBY_SLOTS; tests/unit/test_compose_topology.py checks that they equal
# RegionSpec.slot_name of every standby in latitude/stack/topology.py.
#
# Its inputs are the DEPLOY_* variables docker-compose.yml sets for this script alone; no latitude
# program reads them.
set -Eeuo pipefail

: "${PGDATA:?PGDATA must be set}"
: "${DEPLOY_REPLICATION_USER:?DEPLOY_REPLICATION_USER must be set}"
: "${DEPLOY_REPLICATION_PASSWORD:?DEPLOY_REPLICATION_PASSWORD must be set}"
: "${DEPLOY_STANDBY_SLOTS:?DEPLOY_STANDBY_SLOTS must list the standby slots, comma-separated}"

psql_cmd=(psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname postgres)

# psql interpolates :"name" and :'value' itself, so neither value is pasted into SQL by the shell.
"${psql_cmd[@]}" \
    --set=role_name="$DEPLOY_REPLICATION_USER" \
    --set=role_password="$DEPLOY_REPLICATION_PASSWORD" <<'SQL'
CREATE ROLE :"role_name" WITH LOGIN REPLICATION PASSWORD :'role_password';
SQL

IFS=',' read -r -a slots <<<"$DEPLOY_STANDBY_SLOTS"
for slot in "${slots[@]}"; do
    if [[ ! $slot =~ ^[a-z0-9_]{1,63}$ ]]; then
        echo "primary-init: invalid replication slot name '$slot'" >&2
        exit 1
    fi
    # immediately_reserve = true: the primary keeps WAL from now on, so a standby whose
    # pg_basebackup starts a little later still finds everything it needs.
    "${psql_cmd[@]}" --set=slot_name="$slot" <<'SQL'
SELECT pg_create_physical_replication_slot(:'slot_name', true);
SQL
done

# The image's own pg_hba line ("host all all all scram-sha-256") does not cover replication
# connections: the keyword `all` never matches the `replication` pseudo-database. pg_basebackup
# copies this file to every standby, so a standby that is promoted later accepts the others too.
printf 'host replication %s all scram-sha-256\n' "$DEPLOY_REPLICATION_USER" >>"$PGDATA/pg_hba.conf"
