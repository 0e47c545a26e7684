# syntax=docker/dockerfile:1
#
# The Countersign image: `countersign` (worker, serve and the rest of the
# CLI) and the example MCP server `countersign-example-mcp`, run as a
# non-root user. docker-compose.yml runs it twice, as `countersign worker`
# and `countersign serve`.
#
#   docker build -t countersign .
#   docker run --rm countersign --help
#
# No HEALTHCHECK here: the same image is a worker (no port) and an HTTP
# server, so docker-compose.yml gives each service its own check.

ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=trixie

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
WORKDIR /src
COPY . .
# BuildKit keeps the crates.io cache and the target dir between builds; the
# binaries are copied out of the cached target dir into /out.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release -p countersign --locked \
    && install -D -m 0755 -t /out \
        target/release/countersign \
        target/release/countersign-example-mcp

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates: TLS to Temporal Cloud, model providers and tool APIs.
# curl: the HTTP health check of `countersign serve` in docker-compose.yml.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 countersign \
    && useradd --system --uid 10001 --gid countersign \
        --home-dir /var/lib/countersign --create-home \
        --shell /usr/sbin/nologin countersign
COPY --from=builder /out/ /usr/local/bin/
# Numeric, so orchestrators that require a non-root user can verify it.
USER 10001:10001
WORKDIR /var/lib/countersign
ENTRYPOINT ["countersign"]
CMD ["worker"]
