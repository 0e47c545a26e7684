#!/bin/sh
# One-shot job of docker-compose.yml (service `temporal-schema`, image
# temporalio/admin-tools): creates Temporal's two PostgreSQL databases and
# brings their schemas to the version this admin-tools image ships.
#
# Safe to run again: `create` accepts an existing database, `setup-schema`
# leaves a newer version alone, and `update-schema` applies only the
# versions the database does not have yet. That is also how an upgrade
# works: raise the admin-tools and server tags together, and this job
# migrates the schemas before the new server starts.
#
# Environment: POSTGRES_SEEDS (host), DB_PORT, POSTGRES_USER, SQL_PASSWORD
# (read by temporal-sql-tool itself).
set -eu

: "${POSTGRES_SEEDS:?set POSTGRES_SEEDS to the PostgreSQL host}"
: "${POSTGRES_USER:?set POSTGRES_USER}"
: "${SQL_PASSWORD:?set SQL_PASSWORD}"
port="${DB_PORT:-5432}"
schemas=/etc/temporal/schema/postgresql/v12

sql() {
    temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$port" \
        -u "$POSTGRES_USER" "$@"
}

# database name, then the schema folder under $schemas
for pair in temporal:temporal temporal_visibility:visibility; do
    db="${pair%%:*}"
    dir="$schemas/${pair#*:}/versioned"
    echo "temporal-schema: database $db"
    sql --db "$db" create
    sql --db "$db" setup-schema -v 0.0
    sql --db "$db" update-schema -d "$dir"
done
echo "temporal-schema: done"
