#!/usr/bin/env bash
# Installs the system packages the build needs (C toolchain for the bundled librdkafka, Python
# venv support, curl) when they are missing. Debian/Ubuntu; needs root or sudo for apt-get.
set -euo pipefail

missing=()
command -v cc >/dev/null || missing+=(gcc)
command -v make >/dev/null || missing+=(make)
command -v curl >/dev/null || missing+=(curl)
command -v perl >/dev/null || missing+=(perl)
command -v cargo >/dev/null || { echo "install-prerequisites: cargo not found; install Rust from https://rustup.rs" >&2; exit 1; }
command -v python3 >/dev/null || missing+=(python3 python3-venv)

if ((${#missing[@]})); then
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    echo "install-prerequisites: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "install-prerequisites: ok" >&2
