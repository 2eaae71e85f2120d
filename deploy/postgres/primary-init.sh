#!/usr/bin/env bash
# Runs once, on the first start of the container of the region that starts as primary
# (first-start.sh runs it as the postgres user against the temporary, socket-only server it
# starts for initialisation).
#
# It creates the replication role, lets that role connect for replication from the compose network,
# creates one physical replication slot per standby region, and creates the agents' role
# (latitude_agent, from agent-role.sql, generated from the native stack's grants) with a fresh
# random password, which it leaves in DEPLOY_CREDENTIALS_DIR/agent-db-password (0600, owned by the
# postgres uid the agents run as) for the agents to read: no container's environment holds it. The slot names come from
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
: "${DEPLOY_AGENT_ROLE_SQL:?DEPLOY_AGENT_ROLE_SQL must name the mounted agent-role.sql}"
: "${DEPLOY_CREDENTIALS_DIR:?DEPLOY_CREDENTIALS_DIR must name the agent-credentials mount}"

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

# The agents' password: random, written where only the postgres uid can read it, then set. psql
# reads it from that file itself (\set with backquotes), so it is in no command line either.
password_file="$DEPLOY_CREDENTIALS_DIR/agent-db-password"
(
    umask 077
    head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$password_file.partial"
    echo >>"$password_file.partial"
    mv -- "$password_file.partial" "$password_file"
)
"${psql_cmd[@]}" --set=password_file="$password_file" --set=role_sql="$DEPLOY_AGENT_ROLE_SQL" <<'SQL'
\set agent_password `cat :'password_file'`
\i :role_sql
SQL
