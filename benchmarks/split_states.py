"""Split a multi-layer token-state cache (``Backbone(layer=[A, B, ...])``) into one cache per layer,
without a backbone pass: the inverse of ``stack_states.py``.

    python benchmarks/split_states.py .cache/latentlex-eval/states/scifact-all-mpnet-base-v2-Lfinal+1 \\
        .cache/latentlex-eval/states/scifact-all-mpnet-base-v2 [...one output per layer]

Each document's rows in a cache reading n layers are its kept tokens at each layer in turn (the order
``Backbone.forward`` uses), so layer i's rows are the i-th of n equal slices. ``meta.json`` of each
output is the input's with ``layer`` set to that one layer, so ``encode_token_states`` and
``latentlex eval`` reuse the folder as if the backbone had read that layer alone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from latentlex.states import TokenStates


def split(src: str | Path, outs: list[str | Path]) -> None:
    st = TokenStates.open(src)
    layers = st.meta.get("layer")
    if not isinstance(layers, list) or len(layers) != len(outs):
        raise SystemExit(f"{src} reads layers {layers}: give one output folder per layer")
    n = len(layers)
    lengths = st.lengths
    if np.any(lengths % n):
        raise SystemExit(f"{src}: a document's rows are not a multiple of {n}")
    per = lengths // n
    offsets = np.zeros(len(per) + 1, dtype=np.int64)
    np.cumsum(per, out=offsets[1:])
    for i, out in enumerate(outs):
        out = Path(out)
        out.mkdir(parents=True, exist_ok=False)
        with (out / "tokens.f16").open("wb") as fh:
            for j in range(st.n_docs):
                lo = int(st.offsets[j]) + i * int(per[j])
                fh.write(np.asarray(st.tokens[lo : lo + int(per[j])]).tobytes())
        np.save(out / "offsets.npy", offsets)
        np.save(out / "dense.npy", np.asarray(st.dense))
        (out / "doc_ids.json").write_text(json.dumps(st.doc_ids))
        meta = {**st.meta, "layer": layers[i], "total_tokens": int(offsets[-1])}
        (out / "meta.json").write_text(json.dumps(meta, indent=2))
        print(json.dumps({"out": str(out), "layer": layers[i], "rows": meta["total_tokens"]}))


if __name__ == "__main__":
    split(sys.argv[1], sys.argv[2:])
