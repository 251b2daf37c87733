#!/usr/bin/env bash
# Kranj ZA vse: one database and one login role per service, so that no service can read
# another's tables (DESIGN.md). The official postgres image runs this once, when the
# data volume is first initialised (/docker-entrypoint-initdb.d/); it is also safe to
# run again by hand: what exists is left alone.
#
# The identity store every service checks staff against (accounts, sessions, API tokens)
# has a database and role of its own too: kranj_accounts.
#
# Passwords come from the container's environment (see .env.example):
#   EVENTS_DB_PASSWORD, BOOKING_DB_PASSWORD, SURVEYS_DB_PASSWORD, NOTIFY_DB_PASSWORD,
#   ACCOUNTS_DB_PASSWORD
# Changing one later needs `ALTER ROLE <service> PASSWORD '...'` as well: this script
# does not run again on an initialised volume.
set -euo pipefail

create_service_database() {
    local name="$1" password="$2" variable="${3:-${1^^}_DB_PASSWORD}"
    if [[ -z "$password" ]]; then
        echo "kranj init: no password for the $name database (set $variable)" >&2
        exit 1
    fi
    psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
        --set=name="$name" --set=password="$password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'name', :'password')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'name') \gexec
SELECT format('CREATE DATABASE %I OWNER %I ENCODING %L TEMPLATE template0', :'name', :'name', 'UTF8')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'name') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'name') \gexec
SELECT format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', :'name', :'name') \gexec
SQL
    echo "kranj init: database and role '$name' ready"
}

create_service_database events  "${EVENTS_DB_PASSWORD:-}"
create_service_database booking "${BOOKING_DB_PASSWORD:-}"
create_service_database surveys "${SURVEYS_DB_PASSWORD:-}"
create_service_database notify  "${NOTIFY_DB_PASSWORD:-}"
create_service_database kranj_accounts "${ACCOUNTS_DB_PASSWORD:-}" ACCOUNTS_DB_PASSWORD
