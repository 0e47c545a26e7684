#!/bin/sh
# One-shot job of docker-compose.yml (service `countersign-setup`, image
# temporalio/admin-tools): once the Temporal server answers, creates the
# namespace Countersign runs in (if missing) and registers Countersign's
# search attributes on it, then checks that each one is there with its type.
#
#   setup-countersign.sh NAME=TYPE...
#
# The NAME=TYPE list is in docker-compose.yml; tests/e2e/compose.rs checks it
# against the list the code registers (countersign_proto::contract::SEARCH_ATTRIBUTES).
# Safe to run again: an attribute that exists with the same type is accepted;
# one that exists with another type is an error (a run could not upsert it).
#
# Environment: TEMPORAL_ADDRESS (host:port), TEMPORAL_NAMESPACE (default
# `default`), TEMPORAL_NAMESPACE_RETENTION (how long closed runs, and so their
# audit trail, are kept; default 30d), SETUP_ATTEMPTS (default 60, 2 s apart).
set -eu

: "${TEMPORAL_ADDRESS:?set TEMPORAL_ADDRESS to the Temporal frontend, host:port}"
namespace="${TEMPORAL_NAMESPACE:-default}"
retention="${TEMPORAL_NAMESPACE_RETENTION:-30d}"
attempts="${SETUP_ATTEMPTS:-60}"

if [ "$#" -eq 0 ]; then
    echo "usage: $0 NAME=TYPE..." >&2
    exit 2
fi
for pair in "$@"; do
    case "$pair" in
        ?*=?*) ;;
        *) echo "countersign-setup: \`$pair\` is not NAME=TYPE" >&2; exit 2 ;;
    esac
done

# retry WHAT COMMAND...: runs COMMAND until it succeeds, at most $attempts times.
retry() {
    what="$1"
    shift
    n=1
    until "$@"; do
        if [ "$n" -ge "$attempts" ]; then
            echo "countersign-setup: gave up after $attempts attempts: $what" >&2
            return 1
        fi
        echo "countersign-setup: not yet ($n/$attempts): $what" >&2
        n=$((n + 1))
        sleep 2
    done
}

cli() {
    temporal "$@" --address "$TEMPORAL_ADDRESS"
}

ensure_namespace() {
    cli operator namespace describe --namespace "$namespace" >/dev/null 2>&1 ||
        cli operator namespace create --namespace "$namespace" --retention "$retention"
}

# A new namespace takes a few seconds to reach every frontend cache: until
# then, creating attributes on it fails with "not found", and is retried.
create_attribute() {
    if output=$(cli operator search-attribute create --namespace "$namespace" \
        --name "$1" --type "$2" 2>&1); then
        return 0
    fi
    echo "$output" >&2
    case "$output" in
        *"different type"*) exit 1 ;;
    esac
    return 1
}

retry "cluster health at $TEMPORAL_ADDRESS" cli operator cluster health
retry "namespace $namespace" ensure_namespace
for pair in "$@"; do
    name="${pair%%=*}"
    type="${pair#*=}"
    retry "search attribute $name ($type)" create_attribute "$name" "$type"
done

listing=$(cli operator search-attribute list --namespace "$namespace")
missing=0
for pair in "$@"; do
    name="${pair%%=*}"
    type="${pair#*=}"
    if ! printf '%s\n' "$listing" | grep -Eq "^[[:space:]]*$name[[:space:]]+$type[[:space:]]*$"; then
        echo "countersign-setup: $name ($type) is not listed on namespace $namespace" >&2
        missing=1
    fi
done
if [ "$missing" -ne 0 ]; then
    printf '%s\n' "$listing" >&2
    exit 1
fi
echo "countersign-setup: namespace $namespace has $*"
