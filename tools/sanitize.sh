#!/usr/bin/env bash
# Build fastvae's compiled extensions with AddressSanitizer and
# UndefinedBehaviorSanitizer in a scratch copy of the repository, then run
# the kernel tests against that build. Any out-of-bounds access, use after
# free or undefined behaviour in fastvae's C/Cython code stops the run with
# a report naming the source line.
#
#   tools/sanitize.sh                       # the kernel test files (a few minutes)
#   tools/sanitize.sh tests/test_model.py   # or any pytest arguments
#
# Run it from the project's development environment (pip install -e ".[test]");
# it needs gcc with its sanitizer runtimes (Debian/Ubuntu: part of the gcc
# package; libasan8 and libubsan1). FASTVAE_SANITIZE_KEEP=1 keeps the
# instrumented copy for a closer look. Python itself is not instrumented, so the
# runtimes are preloaded; leak detection is off because CPython deliberately
# keeps its own allocations until exit. Not part of CI: the instrumented
# build and tests take several minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python}
CC=${CC:-gcc}
libasan=$("$CC" -print-file-name=libasan.so)
libubsan=$("$CC" -print-file-name=libubsan.so)
for lib in "$libasan" "$libubsan"; do
    if [ ! -e "$lib" ]; then
        echo "sanitize.sh: $CC has no $(basename "$lib"); install gcc's sanitizer runtimes" >&2
        exit 2
    fi
done
# resolve linker scripts / symlinks to the shared object the loader can preload
libasan=$(realpath "$libasan")
libubsan=$(realpath "$libubsan")

if [ "$#" -eq 0 ]; then
    set -- tests/test_gemm.py tests/test_dense.py tests/test_losses.py tests/test_optim.py \
        tests/test_reparam.py tests/test_rng.py tests/test_numerics.py \
        tests/test_step.py tests/test_step_variants.py tests/test_fuzz_kernels.py \
        tests/test_bad_input.py tests/test_threads.py tests/test_contention.py
fi

"$PYTHON" -c "import Cython, setuptools" 2>/dev/null ||
    "$PYTHON" -m pip install --quiet "Cython>=3.0" "setuptools>=64"

work=$(mktemp -d "${TMPDIR:-/tmp}/fastvae-sanitize.XXXXXX")
if [ -n "${FASTVAE_SANITIZE_KEEP:-}" ]; then
    echo "== keeping the instrumented copy in $work"
else
    trap 'rm -rf "$work"' EXIT
fi
# tracked and new (not ignored) files as they are in the working tree
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$work"
cd "$work"

echo "== building with -fsanitize=address,undefined in $work"
# The flags go into CC so that setup.py's OpenMP probe, which links a small
# executable, is instrumented too (with CFLAGS alone the probe fails to link
# and the build silently loses OpenMP).
flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
CC="$CC $flags" FASTVAE_CYTHON_JOBS=2 FASTVAE_DEBUG_INFO=1 \
    "$PYTHON" setup.py --quiet build_ext --inplace -j 2 >build.log 2>&1 ||
    { tail -40 build.log >&2; exit 1; }
nm -D fastvae/_core/_step*.so | grep -q __asan_init ||
    { echo "sanitize.sh: the build is not instrumented" >&2; exit 1; }
if grep -q "building fastvae without OpenMP" build.log && [ -z "${FASTVAE_NO_OPENMP:-}" ]; then
    echo "sanitize.sh: the instrumented build has no OpenMP (see $work/build.log)" >&2
    exit 1
fi

export LD_PRELOAD="$libasan $libubsan"
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:halt_on_error=1:abort_on_error=1:detect_stack_use_after_return=0:print_summary=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export PYTHONPATH="$work${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" -c "import fastvae, sys; sys.exit(not fastvae.__file__.startswith('$work'))" ||
    { echo "sanitize.sh: the instrumented build is not the one imported" >&2; exit 1; }

echo "== tests against the instrumented build: $*"
"$PYTHON" -m pytest -q -p no:cacheprovider "$@"
echo "== sanitize.sh: no AddressSanitizer or UndefinedBehaviorSanitizer errors"
