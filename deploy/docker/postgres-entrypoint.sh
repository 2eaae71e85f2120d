#!/usr/bin/env bash
# Entrypoint of the local stand-in image (latitude/stack/docker_images.py) that the compose test
# tags as postgres:15-bookworm, the etcd image and latitude:local at once.
#
# For a `postgres` command it does what the official postgres image's docker-entrypoint.sh does
# for docker-compose.yml: as root, make PGDATA the postgres user's and continue as that user; on
# the first start (no PG_VERSION) initdb with POSTGRES_USER/POSTGRES_PASSWORD and
# POSTGRES_INITDB_ARGS, allow password logins over TCP, run /docker-entrypoint-initdb.d/*.sh
# against a temporary server that listens on the Unix socket only, stop it; then exec postgres.
# Any other command (etcd, latitude-agent, latitude-coordinator, a standby's entrypoint) is
# exec'd as is.
set -Eeuo pipefail

if [[ $# -eq 0 || ${1:0:1} == "-" ]]; then
    set -- postgres "$@"
fi
if [[ $1 != postgres ]]; then
    exec "$@"
fi

: "${PGDATA:?PGDATA must be set}"
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"

if [[ $(id -u) -eq 0 ]]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 0700 "$PGDATA"
    exec gosu postgres "${BASH_SOURCE[0]}" "$@"
fi

if [[ ! -s $PGDATA/PG_VERSION ]]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of flags, split on purpose
    initdb --username="${POSTGRES_USER:-postgres}" --pwfile="$pwfile" ${POSTGRES_INITDB_ARGS:-}
    rm -f -- "$pwfile"
    printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"

    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -p 5432" start
    for script in /docker-entrypoint-initdb.d/*.sh; do
        [[ -e $script ]] || continue
        echo "postgres-entrypoint: running $script"
        if [[ -x $script ]]; then
            "$script"
        else
            # shellcheck disable=SC1090 # the init scripts are the deployment's
            . "$script"
        fi
    done
    pg_ctl -D "$PGDATA" -m fast -w stop
fi

exec "$@"
