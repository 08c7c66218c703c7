# Shared set-up of tools/test and tools/demo: Debian packages, configure, build.
# Sourced, not run. Honours PG_BUILD_DIR (default: build) and PG_CMAKE_ARGS.

PG_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PG_BUILD_DIR="${PG_BUILD_DIR:-$PG_ROOT/build}"

# Packages polygrad needs to build and test (all from Debian's archive).
# Open MPI: data-parallel training (`mpirun -np N build/polygrad train ...`) and its tests.
PG_PACKAGES=(g++ cmake ninja-build pkg-config libopenblas-dev libopenblas-openmp-dev
  doctest-dev zlib1g-dev nlohmann-json3-dev libcli11-dev libopenmpi-dev openmpi-bin)

# Packages the documented commands need at run time: the default data of `polygrad train vit`
# and `eval` (Fashion-MNIST) and of `train gpt` (the fortunes text; `--data python-stdlib`, the
# Python standard library sources), and gnuplot for the plots of training runs and `compare`. tools/test and tools/demo install both lists, so every command
# of README.md works after either of them.
PG_RUN_PACKAGES=(dataset-fashion-mnist fortunes libpython3-stdlib gnuplot-nox)

# Prints those of the given Debian packages that are not installed.
pg_missing_packages() {
  local p missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  echo "${missing[*]}"
}

# Installs whichever of the given packages are missing; apt-get only runs when needed.
pg_install_packages() {
  local missing=()
  read -r -a missing <<<"$(pg_missing_packages "$@")"
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

# --- trees for the sanitizers and the fuzzers (tools/test, tools/fuzz) -----------------------
# The suites run under AddressSanitizer + UBSan and, those that start threads, under
# ThreadSanitizer, built with g++ like the main tree; the fuzz targets need clang's libFuzzer.
PG_FUZZ_PACKAGES=(clang libclang-rt-dev libomp-dev)
PG_ASAN_BUILD_DIR="${PG_ASAN_BUILD_DIR:-$PG_ROOT/build-asan}"
PG_TSAN_BUILD_DIR="${PG_TSAN_BUILD_DIR:-$PG_ROOT/build-tsan}"
PG_FUZZ_BUILD_DIR="${PG_FUZZ_BUILD_DIR:-$PG_ROOT/build-fuzz}"

# pg_build_variant DIR "CMAKE ARGS" [TARGET...]: configures DIR once (CPU only, Release) and
# builds the given targets (all when none). CXX in the environment picks the compiler.
pg_build_variant() {
  local dir="$1" args="$2"
  shift 2
  if [ ! -f "$dir/build.ninja" ]; then
    # shellcheck disable=SC2086  # args is a list of cmake flags
    cmake -S "$PG_ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPG_CUDA=OFF $args >/dev/null
  fi
  local targets=()
  for t in "$@"; do targets+=(--target "$t"); done
  cmake --build "$dir" -j"$(nproc)" "${targets[@]}"
}

# The libFuzzer targets, with AddressSanitizer + UBSan (tools/fuzz).
pg_build_fuzzers() {
  pg_install_packages "${PG_PACKAGES[@]}" "${PG_FUZZ_PACKAGES[@]}"
  CXX=clang++ pg_build_variant "$PG_FUZZ_BUILD_DIR" \
    "-DPG_SANITIZE=address,undefined -DPG_FUZZ=ON -DPG_BUILD_TESTS=OFF" \
    fuzz_safetensors fuzz_checkpoint fuzz_idx fuzz_attention_spec fuzz_text_corpus
}

# Where apt-get cannot run (the lent GPU machine has no network), unpacks the .deb files that
# tools/gpu_deps fetched into DIR/root and points CMake and the loader at them.
pg_use_carried_debs() {
  local dir="$1" root="$1/root" arch
  compgen -G "$dir/*.deb" >/dev/null || { echo "polygrad: no .deb files in $dir" >&2; return 1; }
  rm -rf "$root" && mkdir -p "$root"
  for f in "$dir"/*.deb; do dpkg-deb -x "$f" "$root"; done
  # Debian's dev symlinks are absolute (libz.so -> /lib/...): re-aim them inside the root.
  local link target
  while IFS= read -r link; do
    target="$(readlink "$link")"
    ln -sfn "$root$target" "$link"
  done < <(find "$root" -type l -lname '/*')
  arch="$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"
  local blas="$root/usr/lib/$arch/openblas-openmp"
  PG_CMAKE_ARGS="${PG_CMAKE_ARGS:-} -DCMAKE_PREFIX_PATH=$root/usr"
  PG_CMAKE_ARGS+=" -DOPENBLAS_INCLUDE_DIR=$root/usr/include/$arch/openblas-openmp"
  PG_CMAKE_ARGS+=" -DOPENBLAS_LIBRARY=$blas/libopenblas.so -DDOCTEST_INCLUDE_DIR=$root/usr/include"
  export PG_CMAKE_ARGS
  export LD_LIBRARY_PATH="$blas:$root/usr/lib/$arch:$root/lib/$arch${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "polygrad: using the libraries unpacked from $dir"
}
