# syntax=docker/dockerfile:1
#
# kafka-influx-sink container image.
#
#   docker build -t kafka-influx-sink:0.1.0 --build-arg KIS_GIT_SHA=$(git rev-parse --short=12 HEAD) .
#   docker run --rm -v "$PWD/config:/etc/kafka-influx-sink:ro" kafka-influx-sink:0.1.0 \
#       check-config --config /etc/kafka-influx-sink/local.toml
#
# Stage 1 compiles the sink with the librdkafka sources bundled in the rdkafka-sys crate (no
# system librdkafka: Debian's is too old for the brokers we test against). Stage 2 is a
# distroless image: glibc, libgcc, OpenSSL's libssl3 and CA certificates, no shell, no package manager, running as
# the `nonroot` user (65532) so that Kubernetes' runAsNonRoot and a read-only root filesystem
# work unchanged.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build

# librdkafka's configure script needs a C toolchain, make, perl and python3, and its TLS and
# SASL/SCRAM support links OpenSSL (libssl-dev, pkg-config); ISA-L (request gzip) needs autoconf,
# automake and libtool. The rust image (buildpack-deps) already has all of these; only the nasm
# assembler, for ISA-L's x86-64 kernels, is added (pinned to bookworm's; hadolint DL3008).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nasm=2.16.01-1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# zlib is linked statically so that the runtime image needs no libz: distroless/cc has none.
ENV LIBZ_SYS_STATIC=1 \
    CARGO_TERM_COLOR=never

# The commit the binary reports in kis_build_info and /status; the build context has no .git.
ARG KIS_GIT_SHA=unknown
ENV KIS_GIT_SHA=${KIS_GIT_SHA}

# Only what the build reads: the workspace manifests, the crate, and the schemas it embeds.
COPY Cargo.toml Cargo.lock ./
COPY connector ./connector
COPY schemas ./schemas

RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin kafka-influx-sink \
    && install -D -m 0755 target/release/kafka-influx-sink /out/kafka-influx-sink

# The image tag follows Debian's release of the build stage, so glibc matches.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime

LABEL org.opencontainers.image.title="kafka-influx-sink" \
      org.opencontainers.image.description="A Kafka consumer-group sink that writes schema-validated records to InfluxDB without losing any." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/kafka-influx-sink/kafka-influx-sink"

COPY --from=build /out/kafka-influx-sink /usr/local/bin/kafka-influx-sink

# The sink writes nothing to disk: configuration and secrets are mounted read-only, logs go to
# stdout. 65532 is distroless' `nonroot`; numeric so that runAsNonRoot can verify it.
USER 65532:65532

# Metrics, /healthz, /readyz and /status ([metrics] listen, default 0.0.0.0:9464).
EXPOSE 9464

ENTRYPOINT ["/usr/local/bin/kafka-influx-sink"]
CMD ["run", "--config", "/etc/kafka-influx-sink/config.toml"]
