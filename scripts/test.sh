#!/usr/bin/env bash
# The test command: install, lint, format check, type check, tests (slow tests deselected; add -m slow for them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check .
ruff format --check .
mypy
python -m pytest "$@"
