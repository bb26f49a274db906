"""Stack two token-state caches of one corpus (same backbone, different layers) into the cache a
multi-layer backbone (``Backbone(layer=[A, B])``) would write, without a backbone pass:

    python benchmarks/stack_states.py .cache/states/scifact .cache/states/scifact-L1 \\
        .cache/latentlex-eval/states/scifact-Lfinal+1

Each document's rows become its rows in the first cache, then its rows in the second (the order
``Backbone.forward`` uses); ``meta.json`` is the first cache's with ``layer`` set to both layers,
so ``encode_token_states`` and ``latentlex eval`` reuse the folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from latentlex.states import TokenStates


def main() -> None:
    a, b = TokenStates.open(sys.argv[1]), TokenStates.open(sys.argv[2])
    out = Path(sys.argv[3])
    if a.doc_ids != b.doc_ids or not np.array_equal(a.offsets, b.offsets):
        raise SystemExit("the two caches do not hold the same documents and tokens")
    keys = ("backbone_fingerprint", "corpus_hash", "keep_special_tokens", "max_seq_length")
    if any(a.meta.get(k) != b.meta.get(k) for k in keys):
        raise SystemExit("the two caches were not made by the same backbone and corpus")
    out.mkdir(parents=True, exist_ok=False)
    with (out / "tokens.f16").open("wb") as fh:
        for i in range(a.n_docs):
            lo, hi = int(a.offsets[i]), int(a.offsets[i + 1])
            fh.write(np.asarray(a.tokens[lo:hi]).tobytes())
            fh.write(np.asarray(b.tokens[lo:hi]).tobytes())
    np.save(out / "offsets.npy", a.offsets * 2)
    np.save(out / "dense.npy", np.asarray(a.dense))
    (out / "doc_ids.json").write_text(json.dumps(a.doc_ids))
    layers = [a.meta.get("layer"), b.meta.get("layer")]
    meta = {**a.meta, "layer": layers, "total_tokens": int(a.offsets[-1]) * 2}
    (out / "meta.json").write_text(json.dumps(meta))
    print(json.dumps({"out": str(out), "layer": layers, "rows": meta["total_tokens"]}))


if __name__ == "__main__":
    main()
