#!/usr/bin/env bash
# Entrypoint of the PostgreSQL container of the region that starts as primary (official
# postgres:15 image): it gives the agent-credentials volume to the postgres user, which the
# image's initialisation scripts run as (primary-init.sh writes the agents' password there), then
# hands over to the image's own entrypoint. A fresh volume belongs to root, and only this step
# runs as root.
#
# Its input is DEPLOY_CREDENTIALS_DIR, which docker-compose.yml sets for this script and
# primary-init.sh alone; no latitude program reads it.
set -Eeuo pipefail

: "${DEPLOY_CREDENTIALS_DIR:?DEPLOY_CREDENTIALS_DIR must name the agent-credentials mount}"

if [[ $(id -u) -eq 0 ]]; then
    chown postgres:postgres "$DEPLOY_CREDENTIALS_DIR"
    chmod 0700 "$DEPLOY_CREDENTIALS_DIR"
fi

exec docker-entrypoint.sh "$@"
