# Shared set-up of tools/test and tools/demo: Debian packages, configure, build.
# Sourced, not run. Honours PG_BUILD_DIR (default: build) and PG_CMAKE_ARGS.

PG_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PG_BUILD_DIR="${PG_BUILD_DIR:-$PG_ROOT/build}"

# Packages polygrad needs to build and test (all from Debian's archive).
PG_PACKAGES=(g++ cmake ninja-build pkg-config libopenblas-dev libopenblas-openmp-dev
  doctest-dev zlib1g-dev nlohmann-json3-dev libcli11-dev)

# Installs whichever of the given packages are missing; apt-get only runs when needed.
pg_install_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "polygrad: installing Debian packages: ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "polygrad: need root (or sudo) to install ${missing[*]}" >&2; return 1; }
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Configures (once) and builds the Release tree.
pg_build() {
  pg_install_packages "${PG_PACKAGES[@]}"
  if [ ! -f "$PG_BUILD_DIR/build.ninja" ]; then
    cmake -S "$PG_ROOT" -B "$PG_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release ${PG_CMAKE_ARGS:-}
  fi
  cmake --build "$PG_BUILD_DIR" -j"$(nproc)"
}
