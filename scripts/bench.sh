#!/usr/bin/env bash
# Set up, then print the performance figures (README "Performance"); pass --json for one JSON object.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m vibe bench "$@"
