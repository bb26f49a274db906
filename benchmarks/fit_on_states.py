"""Fit an SAE on token states already cached by ``latentlex eval`` (no backbone pass), calibrate
avgdl on the first dataset, save. This produced the SAE behind BENCHMARKS.md's SciFact/LIMIT tables:

    python benchmarks/fit_on_states.py .cache/saes/scifact-w8192-k16 8192 16 3 scifact
    python benchmarks/fit_on_states.py .cache/saes/scifact-Lfinal+1-w8192-k16 8192 16 3 scifact-Lfinal+1
    python benchmarks/fit_on_states.py .cache/saes/scifact-mpnet-w8192-k16 8192 16 1 scifact-all-mpnet-base-v2
    python benchmarks/fit_on_states.py .cache/saes/scifact-mpnet-default 8192 16 default scifact-all-mpnet-base-v2

The backbone is the one the token states were read with (recorded in their ``meta.json``). A fractional
epoch count trains on that share of the rows; an optional sixth argument calibrates avgdl on an evenly
spaced sample of that many documents instead of all of them. ``default`` instead of an epoch count
fits as ``latentlex train`` does (:func:`latentlex.fit.fit_on_states`: the default token budget's
sample of whole documents, the default epochs, avgdl on the sample; one states folder).
"""

from __future__ import annotations

import json
import logging
import sys
import time

import numpy as np
import torch
from latentlex.backbone import Backbone, BackboneBatch
from latentlex.sae import SAEConfig
from latentlex.states import TokenStates
from latentlex.terms import LatentTermEncoder
from latentlex.training import TrainConfig, train_sae

STATES = ".cache/latentlex-eval/states"


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    out, width, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sts = [TokenStates.open(f"{STATES}/{name}") for name in sys.argv[5].split(",")]
    if sys.argv[4] == "default":
        fit_default(out, width, k, sts)
        return
    epochs = float(sys.argv[4])
    data = sts[0].tokens if len(sts) == 1 else np.concatenate([np.asarray(s.tokens) for s in sts])
    # the layer(s) the states were read at (a stacked cache: see stack_states.py)
    # and the backbone that read them (its name or path, as the cache records it)
    bb = Backbone(sts[0].meta.get("backbone"), layer=sts[0].meta.get("layer"))
    t0 = time.time()
    sae_cfg = SAEConfig(
        d_in=bb.dim, width=width, k=k, backbone=bb.name, backbone_fingerprint=bb.fingerprint(),
        backbone_dim=bb.dim, max_seq_length=bb.max_seq_length, layer=bb.layer,
    )  # fmt: skip
    sae, rep = train_sae(
        data, TrainConfig(width=width, k=k, epochs=epochs, progress=False), sae_cfg
    )
    encoder = LatentTermEncoder(sae, bb)
    if len(sys.argv) > 6:  # avgdl on an evenly spaced sample of this many documents
        n = min(int(sys.argv[6]), sts[0].n_docs)
        sel = np.unique(np.linspace(0, sts[0].n_docs - 1, n).round().astype(np.int64))
        total = 0.0
        for part in np.array_split(sel, max(1, sel.size // 64)):
            rows = [sts[0].doc_range(int(i), int(i) + 1) for i in part]
            batch = BackboneBatch(
                torch.from_numpy(np.concatenate([r[0] for r in rows]).astype(np.float32)),
                torch.from_numpy(np.concatenate([r[1] for r in rows]).astype(np.int64)),
                torch.zeros(len(rows), bb.dim),
            )
            total += sum(encoder.document_length(m) for _, m in encoder.latent_mass(batch))
        sae.cfg.avgdl = total / sel.size
    else:
        encoder.calibrate_avgdl(sts[0])
    sae.save(out)
    print(json.dumps({"out": out, "fvu": rep.fvu, "l0": rep.l0, "dead": rep.dead_pct,
                      "seconds": time.time() - t0, "avgdl": sae.cfg.avgdl}))  # fmt: skip


def fit_default(out: str, width: int, k: int, sts: list[TokenStates]) -> None:
    from latentlex.fit import FitConfig, fit_on_states

    if len(sts) != 1:
        raise SystemExit("'default' fits on one token-state folder")
    bb = Backbone(sts[0].meta.get("backbone"), layer=sts[0].meta.get("layer"))
    t0 = time.time()
    sae = fit_on_states(sts[0], bb, FitConfig(width=width, k=k, progress=False), out_dir=out)
    m = sae.cfg.metrics
    print(json.dumps({"out": out, "fvu": m["fvu"], "l0": m["l0"], "dead": m["dead_pct"],
                      "seconds": time.time() - t0, "avgdl": sae.cfg.avgdl,
                      "fit_sample": sae.cfg.fit_sample}))  # fmt: skip


if __name__ == "__main__":
    main()
