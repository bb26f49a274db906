"""Fit an SAE on token states already cached by ``latentlex eval`` (no backbone pass), calibrate
avgdl on the first dataset, save. This produced the SAE behind BENCHMARKS.md's SciFact/LIMIT tables:

    python benchmarks/fit_on_states.py .cache/saes/scifact-w8192-k16 8192 16 3 scifact
    python benchmarks/fit_on_states.py .cache/saes/scifact-Lfinal+1-w8192-k16 8192 16 3 scifact-Lfinal+1
    python benchmarks/fit_on_states.py .cache/saes/scifact-mpnet-w8192-k16 8192 16 1 scifact-all-mpnet-base-v2

The backbone is the one the token states were read with (recorded in their ``meta.json``).
"""

from __future__ import annotations

import json
import logging
import sys
import time

import numpy as np
from latentlex.backbone import Backbone
from latentlex.sae import SAEConfig
from latentlex.states import TokenStates
from latentlex.terms import LatentTermEncoder
from latentlex.training import TrainConfig, train_sae

STATES = ".cache/latentlex-eval/states"


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    out, width, k, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    sts = [TokenStates.open(f"{STATES}/{name}") for name in sys.argv[5].split(",")]
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
    LatentTermEncoder(sae, bb).calibrate_avgdl(sts[0])
    sae.save(out)
    print(json.dumps({"out": out, "fvu": rep.fvu, "l0": rep.l0, "dead": rep.dead_pct,
                      "seconds": time.time() - t0, "avgdl": sae.cfg.avgdl}))  # fmt: skip


if __name__ == "__main__":
    main()
