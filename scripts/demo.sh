#!/usr/bin/env bash
# The main job: install, then run the demo (train an SAE offline, index LIMIT-small, answer with explanations).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
python examples/demo.py "$@"
