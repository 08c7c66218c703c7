#!/usr/bin/env bash
# Installs the build tree into a temporary prefix and builds tests/install against it.
set -euo pipefail
build="$1"; src="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" > /dev/null
cmake -S "$src" -B "$work/app" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$work/prefix" > /dev/null
cmake --build "$work/app" > /dev/null
"$work/app/user_app"
