#!/usr/bin/env bash
# The project's test command: installs everything the tests need (venv, pip, apt, npm), then runs pytest.
# Usage: bash scripts/test.sh [pytest args...]     (AIVSREAL_SKIP_SETUP=1 skips the install steps)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${AIVSREAL_SKIP_SETUP:-0}" != "1" ]; then
  bash scripts/setup-dev.sh
fi

export AIVSREAL_WEIGHTS_DIR="${AIVSREAL_WEIGHTS_DIR:-$(cd .. && pwd)/shared/weights}"
export PYTHONUNBUFFERED=1
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: treating as a failure" >&2
  exit 1
fi
exit "$rc"
