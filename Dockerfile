# Build: docker build -t keyway .
# Run:   docker run -p 6380:6380 -e KEYWAY_PASSWORD=... keyway
#        (without a password, protected mode refuses every client from
#        outside the container: see README, Security)
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin keyway

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home keyway \
 && mkdir -p /etc/keyway
COPY --from=build /src/target/release/keyway /usr/local/bin/keyway
COPY config/memory.toml /etc/keyway/keyway.toml
USER keyway
ENV KEYWAY_CONFIG=/etc/keyway/keyway.toml \
    KEYWAY_LISTEN=0.0.0.0:6380
EXPOSE 6380
ENTRYPOINT ["/usr/local/bin/keyway"]
