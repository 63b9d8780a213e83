#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run execs this) and as a developer runs it:
#   ./test.sh
# It installs what the tests need through the project's own files (a Python venv under .venv
# with the in-tree SDK installed offline), builds the .NET solution once, runs every .NET test
# project and every Python unittest suite, reports each suite, and ends with exactly one line
#   N passed, N failed, N skipped
# summed over all suites. Exit status is non-zero when anything failed or when no test ran.
set -uo pipefail
cd "$(dirname "$0")"
ROOT="$PWD"
RESULTS="$ROOT/artifacts/test-results"
rm -rf "$RESULTS"
mkdir -p "$RESULTS"

export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
export PYTHONDONTWRITEBYTECODE=1

# Per-suite lines are appended here as "name<TAB>passed<TAB>failed<TAB>skipped<TAB>note".
SUITES="$RESULTS/suites.tsv"
: >"$SUITES"
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5:-}" >>"$SUITES"; }
section() { printf '\n==== %s\n' "$*"; }

# ---------------------------------------------------------------- Python environment
section "python: venv and offline install of clients/python"
PY_BOOT="${PYTHON:-python3}"
VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  rm -rf "$VENV"
  "$PY_BOOT" -m venv "$VENV" || { echo "cannot create a venv with $PY_BOOT"; record "python-venv" 0 1 0 "venv creation failed"; }
fi
PY="$VENV/bin/python"
if [ -d "$ROOT/clients/python" ] && [ -x "$PY" ]; then
  # No package index here or in CI: the SDK's build backend is in-tree and needs nothing.
  if ! "$PY" -m pip install --quiet --no-index --disable-pip-version-check --force-reinstall "$ROOT/clients/python"; then
    record "python-sdk-install" 0 1 0 "pip install ./clients/python failed"
  fi
fi

# ---------------------------------------------------------------- .NET build (once)
section "dotnet build PolicyGrid.sln"
BUILD_OK=1
if ! dotnet build "$ROOT/PolicyGrid.sln" -c Debug -nologo -v minimal -clp:ErrorsOnly -tl:off >"$RESULTS/build.log" 2>&1; then
  BUILD_OK=0
  grep -E 'error [A-Z]+[0-9]+' "$RESULTS/build.log" | sort -u | head -40
  echo "build failed (full log: artifacts/test-results/build.log)"
  record "dotnet-build" 0 1 0 "build failed"
else
  echo "build ok"
fi

# From here on, tests run: hundreds of short-lived hosts and processes (servers, job runs, the CLI), most of whose
# code runs only a few times. Tiered PGO's instrumentation of that code cost a tenth to a quarter of their CPU
# (Api.Tests 136 CPU-s with it, 119 without; Runtime.Tests 62 and 55; Functions.Tests 129 and 92 at load ~18) and
# bought nothing back. Only the JIT's profiling is off; the build before this keeps it.
export DOTNET_TieredPGO=0

# The Python suites start the built server; tell them where it is.
CLI_DLL="$ROOT/src/PolicyGrid.Cli/bin/Debug/net10.0/policygrid.dll"
[ -f "$CLI_DLL" ] && export POLICYGRID_CLI_DLL="$CLI_DLL"
export POLICYGRID_REPO="$ROOT"

# ---------------------------------------------------------------- .NET tests
if [ "$BUILD_OK" = 1 ]; then
  section "dotnet test: the solution's test assemblies"
  DOTNET_LOG="$RESULTS/dotnet-test.log"
  # The solution's test projects (those referencing the test SDK), as built dlls, one `dotnet test` each, as many at
  # once as there are CPUs, taken in the order given: the longest go first. `dotnet test PolicyGrid.sln` started them
  # in solution order, and Functions and Jobs (minutes each) started last, running alone on one CPU while the other
  # idled, into the timeout. LONGEST_FIRST is that order as measured; a project not named there runs after them, in
  # solution order. (One vstest over all the dlls with --parallel prints no assembly's summary until every one has
  # ended, so a timeout would lose every count; each run prints its own as it ends.)
  LONGEST_FIRST="Api Functions Jobs Runtime Dapr Sdk Graphs Embedded"
  TEST_PROJECTS=$(grep -oE '"[^"]+\.csproj"' "$ROOT/PolicyGrid.sln" | tr -d '"' | tr '\\' '/' |
    while read -r proj; do grep -q 'Microsoft.NET.Test.Sdk' "$ROOT/$proj" && echo "$proj"; done)
  ORDERED=$( { for name in $LONGEST_FIRST; do grep -Fx "tests/PolicyGrid.$name.Tests/PolicyGrid.$name.Tests.csproj" <<<"$TEST_PROJECTS"; done
               echo "$TEST_PROJECTS"; } | awk 'NF && !seen[$0]++')
  TEST_DLLS=()
  for proj in $ORDERED; do
    name=$(basename "$proj" .csproj)
    dll=$(ls "$ROOT/$(dirname "$proj")"/bin/Debug/net*/"$name.dll" 2>/dev/null | head -1)
    if [ -n "$dll" ]; then TEST_DLLS+=("$dll"); else record "$name" 0 1 0 "no built $name.dll"; fi
  done
  # --blame-hang-timeout turns a hung test host into a reported failure instead of a stuck CI.
  run_assembly() {
    dotnet test "$1" --logger "trx;LogFilePrefix=pg" --results-directory "$RESULTS/trx" \
      --blame-hang-timeout 240s --blame-hang-dump-type none >"$RESULTS/dotnet-test.$(basename "$1" .dll).log" 2>&1
  }
  export -f run_assembly
  export RESULTS
  # A guard against a run that never ends (a hung test host is the blame-hang timeout's, above), not a time budget: on a
  # quiet 2-CPU machine the assemblies take about 5 minutes, but on one loaded by other work (load ~30) Api and Functions
  # alone took 5-6 minutes each, and a 540 s limit then killed every assembly not yet started, failing a healthy run.
  TEST_TIMEOUT=1500
  printf '%s\n' "${TEST_DLLS[@]}" | timeout "$TEST_TIMEOUT" xargs -d '\n' -P "$(nproc)" -I{} bash -c 'run_assembly "$1"' _ {}
  DOTNET_RC=$?
  cat "$RESULTS"/dotnet-test.*.log >"$DOTNET_LOG" 2>/dev/null
  grep -E -A4 '^\s+Failed [A-Za-z]' "$DOTNET_LOG" | grep -v '^\s+at ' | head -200
  grep -E '^\s+Skipped |Test Run Aborted|aborted|^(Passed|Failed)!' "$DOTNET_LOG" | head -100
  # One summary line per test assembly, e.g.
  # "Passed!  - Failed:     0, Passed:    12, Skipped:     1, Total:    13, Duration: 2 s - PolicyGrid.Core.Tests.dll (net10.0)"
  COUNTED=$("$PY_BOOT" - "$DOTNET_LOG" "$SUITES" <<'EOF'
import re, sys
log, suites = sys.argv[1], sys.argv[2]
pat = re.compile(r"^(?:Passed|Failed|Skipped)!\s+-\s+Failed:\s+(\d+),\s+Passed:\s+(\d+),\s+Skipped:\s+(\d+),\s+Total:\s+(\d+).*?-\s+(\S+)\.dll")
n = 0
with open(log, errors="replace") as f, open(suites, "a") as out:
    for line in f:
        m = pat.search(line.strip())
        if m:
            failed, passed, skipped, _total, name = m.groups()
            out.write(f"{name}\t{passed}\t{failed}\t{skipped}\t\n")
            n += int(failed)
print(n)
EOF
)
  # An assembly whose run printed no summary (the $TEST_TIMEOUT s timeout stopped it, or its host died) is named and counted as
  # one failure: its tests did not all run.
  MISSING=0
  for dll in "${TEST_DLLS[@]}"; do
    name=$(basename "$dll" .dll)
    if ! grep -q "^$name	" "$SUITES"; then
      MISSING=$((MISSING + 1))
      echo "$name: no summary (its run did not end: the $TEST_TIMEOUT s timeout, or its test host died); see $RESULTS/dotnet-test.$name.log"
      record "$name" 0 1 0 "no summary: timed out or its host died"
    fi
  done
  # A test host that dies mid-run prints no summary line for its assembly: count each as a failure.
  ABORTED=$(grep -ciE 'Test Run Aborted|The active test run was aborted|Catastrophic failure' "$DOTNET_LOG")
  if [ "$ABORTED" -gt 0 ]; then
    grep -iE -B2 -A8 'Test Run Aborted|The active test run was aborted|Catastrophic failure' "$DOTNET_LOG" | head -60
    record "dotnet-test-aborted" 0 "$ABORTED" 0 "test host(s) aborted (crash, hang or timeout)"
  elif [ "$DOTNET_RC" -ne 0 ] && [ "${COUNTED:-0}" -eq 0 ] && [ "$MISSING" -eq 0 ]; then
    # A crashed or timed-out test host, or a runner error: no test says "failed", but the run did.
    tail -30 "$DOTNET_LOG"
    record "dotnet-test-runner" 0 1 0 "dotnet test exited $DOTNET_RC without a failed test (host crash/timeout?)"
  fi
fi

# ---------------------------------------------------------------- Python tests
# Every directory named tests/ that directly holds test_*.py files (outside build output and
# venvs) is one unittest suite.
PY_DIRS=$(find "$ROOT" \( -name .git -o -name .venv -o -name bin -o -name obj -o -name node_modules -o -name artifacts \) -prune -o \
  -type f -name 'test_*.py' -path '*/tests/*' -printf '%h\n' | sort -u)
for dir in $PY_DIRS; do
  rel="${dir#"$ROOT"/}"
  section "python unittest: $rel"
  if [ ! -x "$PY" ]; then record "py:$rel" 0 1 0 "no venv"; continue; fi
  (cd "$dir" && timeout 300 "$PY" - "$dir" "py:$rel" "$SUITES" <<'EOF'
import sys, unittest
start, name, suites = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, start)
suite = unittest.defaultTestLoader.discover(start, pattern="test*.py", top_level_dir=start)
result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2).run(suite)
skipped = len(result.skipped)
failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
passed = result.testsRun - skipped - failed
with open(suites, "a") as out:
    out.write(f"{name}\t{passed}\t{failed}\t{skipped}\t\n")
EOF
  ) 2>&1
  rc=$?
  if ! grep -q "^py:$rel	" "$SUITES"; then
    record "py:$rel" 0 1 0 "runner exited $rc before reporting"
  fi
done

# ---------------------------------------------------------------- summary
section "summary"
P=0; F=0; S=0
while IFS=$'\t' read -r name p f s note; do
  printf '  %-44s %5s passed %5s failed %5s skipped  %s\n' "$name" "$p" "$f" "$s" "$note"
  P=$((P + p)); F=$((F + f)); S=$((S + s))
done <"$SUITES"
if [ $((P + F)) -eq 0 ]; then
  echo "no test ran: failing the run"
  echo "$P passed, $F failed, $S skipped"
  exit 1
fi
echo "$P passed, $F failed, $S skipped"
[ "$F" -eq 0 ]
