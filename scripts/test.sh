#!/usr/bin/env bash
# The test command: install, lint, format check, type check, tests (slow tests deselected; add -m slow for them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The HTML-report test renders in headless Chromium; CI installs it (the test skips where it is absent).
if [ "${CI:-}" = "true" ] && ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null) || echo "chromium not installed; its test will skip"
fi
. .venv/bin/activate
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
ruff check .
ruff format --check .
mypy
MYPYPATH=integrations:core mypy --explicit-package-bases -p llama_index.retrievers.latentlex -p llama_index.vector_stores.latentlex -p langchain_latentlex
python -m pytest "$@"
