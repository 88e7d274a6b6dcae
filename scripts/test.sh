#!/usr/bin/env bash
# Set up (venv + requirements) and run the default test suite. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements-scale.txt  # Ray too: its tests run, never skip
# the browser test drives Debian's chromium (Playwright's own browser download cannot run offline)
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    for attempt in 1 2; do  # a mirror hiccup should not fail the whole run
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null && break
      sleep 10
    done
  else
    echo "note: chromium is not installed (sudo apt-get install chromium); the browser test will be skipped" >&2
  fi
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
