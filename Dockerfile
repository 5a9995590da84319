# Build: docker build -t keyway .
# Run:   docker run -p 6380:6380 -p 9121:9121 -e KEYWAY_PASSWORD=... keyway
#        (without a password, protected mode refuses every client from
#        outside the container: see README, Security)
# Any config: mount it and set KEYWAY_CONFIG; KEYWAY_LISTEN and
# KEYWAY_METRICS_LISTEN still say where keyway listens, whatever the file.
# tests/cli.rs checks what it can of this file without a container engine.

# Pinned: the build must not change under us (edition 2024 needs 1.85+).
FROM rust:1.85-bookworm AS build
WORKDIR /src
# Dependencies first, in a layer of their own: a change to keyway's source
# rebuilds keyway, not the ~140 crates it uses.
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --bin keyway \
 && rm -rf src target/release/keyway target/release/deps/keyway-* target/release/deps/libkeyway-* target/release/.fingerprint/keyway-*
COPY src ./src
RUN cargo build --release --locked --bin keyway

FROM debian:12.8-slim
# CA certificates: a rediss:// backend without tls_ca_file (every managed
# Redis) checks the server against the system's CAs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home keyway \
 && mkdir -p /etc/keyway /var/lib/keyway \
 && chown keyway /var/lib/keyway
COPY --from=build /src/target/release/keyway /usr/local/bin/keyway
COPY config/memory.toml /etc/keyway/keyway.toml
USER keyway
ENV KEYWAY_CONFIG=/etc/keyway/keyway.toml \
    KEYWAY_LISTEN=0.0.0.0:6380 \
    KEYWAY_METRICS_LISTEN=0.0.0.0:9121
EXPOSE 6380 9121
# The image has no curl: bash's /dev/tcp asks /healthz.
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9121 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q '200 OK' <&3"]
ENTRYPOINT ["/usr/local/bin/keyway"]
