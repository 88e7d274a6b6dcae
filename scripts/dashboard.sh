#!/usr/bin/env bash
# Set up (venv + requirements), build the shipped sample catalogue's artifacts if they are missing, start the dashboard.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export VIBE_WORKDIR=${VIBE_WORKDIR:-data/build}
if ! .venv/bin/python -m vibe status >/dev/null 2>&1; then
  echo "First run: building the artifacts for data/sample (backbone: auto)..."
  .venv/bin/python -m vibe build --data data/sample
fi
echo "Find-My-Vibe dashboard on http://localhost:${PORT:-8501}"
exec .venv/bin/streamlit run Home.py --server.port "${PORT:-8501}" --server.headless true \
  --browser.gatherUsageStats false --server.fileWatcherType none
