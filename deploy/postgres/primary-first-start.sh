#!/usr/bin/env bash
# The first start of the container of the region that starts as primary (docker-compose.yml),
# run by its PID 1 (latitude.region_container) as the postgres user when PGDATA holds no
# cluster yet; never again once it does: from then on the region's agent owns its role and
# configuration.
#
# initdb, the settings every region runs with (DEPLOY_SETTINGS_FILE: server.conf, generated from
# latitude/stack/compose.py; the standbys' clones copy them), password logins over TCP, then
# primary-init.sh (DEPLOY_INIT_SCRIPT) against a temporary server that listens on the Unix
# socket only: the replication role, the slots, the agents' role and password.
#
# Its inputs are the DEPLOY_* and POSTGRES_* variables docker-compose.yml sets for it; the
# supervisor passes them to this script alone, never to the agent or the keeper.
set -Eeuo pipefail

: "${PGDATA:?PGDATA must be set}"
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
: "${DEPLOY_SETTINGS_FILE:?DEPLOY_SETTINGS_FILE must name the mounted server settings}"
: "${DEPLOY_INIT_SCRIPT:?DEPLOY_INIT_SCRIPT must name the mounted primary-init.sh}"

if [[ -s $PGDATA/PG_VERSION ]]; then
    exit 0
fi

pwfile=$(mktemp)
trap 'rm -f -- "$pwfile"' EXIT
printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
# Peer on the socket (the postgres OS user only), SCRAM passwords over TCP.
# shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of flags, split on purpose
initdb --username="${POSTGRES_USER:-postgres}" --pwfile="$pwfile" \
    --auth-local=peer --auth-host=scram-sha-256 ${POSTGRES_INITDB_ARGS:-}
rm -f -- "$pwfile"
printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
cat "$DEPLOY_SETTINGS_FILE" >>"$PGDATA/postgresql.conf"

pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start
"$DEPLOY_INIT_SCRIPT"
pg_ctl -D "$PGDATA" -m fast -w stop
