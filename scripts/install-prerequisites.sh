#!/usr/bin/env bash
# Installs the system packages the build needs (C toolchain for the bundled librdkafka, OpenSSL
# headers for its TLS and SASL/SCRAM support, nasm and autotools for ISA-L's gzip, Python venv
# support, curl) and promtool (Debian's `prometheus` package, for the alerting rule tests)
# when they are missing. Debian/Ubuntu; needs root or sudo for apt-get.
set -euo pipefail

missing=()
command -v cc >/dev/null || missing+=(gcc)
command -v make >/dev/null || missing+=(make)
command -v curl >/dev/null || missing+=(curl)
command -v perl >/dev/null || missing+=(perl)
command -v pkg-config >/dev/null || missing+=(pkg-config)
# librdkafka links the system OpenSSL (TLS listeners, SASL SCRAM); the runtime needs libssl3.
{ command -v pkg-config >/dev/null && pkg-config --exists openssl; } || missing+=(libssl-dev)
command -v cargo >/dev/null || { echo "install-prerequisites: cargo not found; install Rust from https://rustup.rs" >&2; exit 1; }
command -v python3 >/dev/null || missing+=(python3 python3-venv)
# ISA-L (request gzip, the isal-sys crate) is built from its source: autotools and the nasm
# assembler for its x86-64 kernels.
command -v nasm >/dev/null || missing+=(nasm)
command -v autoreconf >/dev/null || missing+=(autoconf)
command -v automake >/dev/null || missing+=(automake)
command -v libtoolize >/dev/null || missing+=(libtool)

# promtool comes only with the Prometheus server package. It is installed on its own, without
# the recommended node exporter; on a host with an init system the package also starts a
# Prometheus service, which nothing here uses.
missing_no_recommends=()
command -v promtool >/dev/null || missing_no_recommends+=(prometheus)

all_missing=("${missing[@]}" "${missing_no_recommends[@]}")
if ((${#all_missing[@]})); then
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    echo "install-prerequisites: installing ${all_missing[*]}" >&2
    $sudo apt-get update -qq
    if ((${#missing[@]})); then
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if ((${#missing_no_recommends[@]})); then
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
            "${missing_no_recommends[@]}" >/dev/null
    fi
fi
echo "install-prerequisites: ok" >&2
