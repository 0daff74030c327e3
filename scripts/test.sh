#!/usr/bin/env bash
# Installs what the tests need on a fresh machine, then runs the whole test suite.
#   - kcat from Debian (real librdkafka 2.0.2 client)
#   - a Python venv in .venv with confluent-kafka and kafka-python
#   - openssl (for the deploy certificates)
#   - chromium (headless: renders the lag report in a test)
# Then: builds (failing on any warning from Sources/ or Tests/) and runs swift test. Extra arguments
# are passed to swift test (e.g. --filter KcatTests).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v kcat >/dev/null 2>&1 || need_apt+=(kcat)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "test.sh: installing ${need_apt[*]} with apt-get"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! .venv/bin/python -c 'import confluent_kafka, kafka, prometheus_client' >/dev/null 2>&1; then
  echo "test.sh: creating .venv with confluent-kafka, kafka-python and prometheus-client"
  rm -rf .venv
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check confluent-kafka kafka-python prometheus-client
fi

echo "test.sh: kcat $(kcat -V 2>/dev/null | sed -n 's/^Version \([^ ]*\).*librdkafka \([^ )]*\).*/\1 (librdkafka \2)/p'), $(.venv/bin/python -c 'import confluent_kafka, kafka; print("confluent-kafka", confluent_kafka.__version__, "/ kafka-python", kafka.__version__)')"
# Build first and fail on any compiler warning from the project's own code (a fresh clone compiles
# everything, so every warning shows here). Extra arguments go to swift test.
build_log=$(mktemp)
trap 'rm -f "$build_log"' EXIT
if ! swift build --build-tests 2>&1 | tee "$build_log"; then
  echo "test.sh: the build failed" >&2
  exit 1
fi
# Warnings inside macro expansions (#expect) name the project file on an "originates here" line.
own_warnings=$( { grep -E "warning:" "$build_log" | grep -E "/(Sources|Tests)/";
                  grep -E "originates here" "$build_log" | grep -E "/(Sources|Tests)/"; } | sort -u || true)
if [ -n "$own_warnings" ]; then
  echo "test.sh: compiler warnings in Sources/ or Tests/ (fix them; the build must be warning-free):" >&2
  echo "$own_warnings" >&2
  exit 1
fi
# A test that hangs without yielding cannot be stopped by its time limit: bound the whole run so
# CI reports it (the time-limit message names the test) instead of waiting out its own limit.
status=0
timeout --kill-after=30 45m swift test --skip-build "$@" || status=$?
# Every child a test starts dies with the test process (a parent-death signal); anything of this
# checkout still running now is a leak to fix, so it is named, and killed so it cannot hold ports.
root=$(pwd)
left=""
for _ in 1 2 3 4 5 6 7 8 9 10; do   # children killed as the test process ended need a moment to go
  left=$(pgrep -f "^($root/\.build/|$root/\.venv/)" || true)
  [ -z "$left" ] && break
  sleep 0.5
done
if [ -n "$left" ]; then
  echo "test.sh: processes outlived the tests (a leak; they are killed now):" >&2
  ps -o pid=,args= -p $(echo $left | tr ' ' ',') >&2 || true
  kill -9 $left 2>/dev/null || true
fi
exit $status
