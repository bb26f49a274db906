"""Shared fixtures: the packaged backbone (loaded once), the real datasets' location."""

from __future__ import annotations

import os
from pathlib import Path

# On a shared CPU, OpenMP threads that spin while waiting cost up to 30x (measured): yield instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LATENTLEX_DATA", REPO.parent / "shared" / "data"))
LIMIT_SMALL = REPO / "examples" / "data" / "limit-small"


@pytest.fixture(scope="session")
def backbone():
    from latentlex.backbone import Backbone

    return Backbone(device="cpu")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_sae_dir(tmp_path_factory, backbone):
    """A small token-mode SAE fitted on LIMIT-small (a few seconds), saved to a folder."""
    from latentlex.corpus import read_corpus
    from latentlex.fit import fit_sae

    out = tmp_path_factory.mktemp("sae") / "tiny"
    texts = [d.text for d in read_corpus(LIMIT_SMALL)]
    fit_sae(texts, out, backbone=backbone, width=512, k=8, epochs=4, progress=False)
    return out


@pytest.fixture(scope="session")
def encoder(tiny_sae_dir, backbone):
    from latentlex.sae import SparseAutoencoder
    from latentlex.terms import LatentTermEncoder

    return LatentTermEncoder(SparseAutoencoder.load(tiny_sae_dir), backbone, batch_size=8)
