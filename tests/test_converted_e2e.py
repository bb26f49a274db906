"""End to end with converted SAEs: a pooled latentsae SAE and a token-mode sparsify SAE, each
written in its library's own layout (the configs of the committed real-library fixtures, with
all-MiniLM-L6-v2's 384 dimensions), loaded through ``from_pretrained``, calibrated on LIMIT-small,
indexed with :class:`~latentlex.index.LatentIndex` and searched.

The SAEs are small (512 latents) and built in the test, not trained: encoder rows are LIMIT-small's
own (centred, normalised) pooled embeddings or token states plus seeded noise, so latents fire on
the documents' content and the latent leg has something to find.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import LIMIT_SMALL
from latentlex.corpus import read_corpus
from latentlex.errors import ConfigError
from latentlex.hub import from_pretrained
from latentlex.index import LatentIndex
from latentlex.terms import LatentTermEncoder
from safetensors.torch import save_file

FIXTURES = Path(__file__).parent / "fixtures" / "saes"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
WIDTH = 512
N_QUERIES = 60


@pytest.fixture(scope="module")
def limit():
    docs = list(read_corpus(LIMIT_SMALL))
    queries = [json.loads(line) for line in (LIMIT_SMALL / "queries.jsonl").open()][:N_QUERIES]
    qrels: dict[str, set[str]] = {}
    for line in (LIMIT_SMALL / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, did, score = line.split("\t")
        if int(score) > 0:
            qrels.setdefault(qid, set()).add(did)
    return docs, queries, qrels


def _dictionary(rows: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """Encoder/decoder rows from data rows (centred, unit norm) plus noise; b_dec their mean."""
    g = torch.Generator().manual_seed(seed)
    mean = rows.mean(0)
    pick = rows[torch.randint(rows.shape[0], (WIDTH,), generator=g)] - mean
    atoms = pick + 0.05 * torch.randn(pick.shape, generator=g) * pick.norm(dim=1, keepdim=True)
    atoms = atoms / atoms.norm(dim=1, keepdim=True)
    return {"W": atoms.contiguous(), "b_enc": torch.zeros(WIDTH), "b_dec": mean.contiguous()}


def _latentsae_repo(root: Path, dense: torch.Tensor) -> str:
    """A latentsae 0.2 repository folder (cfg.json keys as latentsae 0.2.0 writes them)."""
    cfg = json.loads((FIXTURES / "latentsae-0.2" / "topk" / "8_2" / "cfg.json").read_text())
    k = 16
    cfg.update(d_in=384, num_latents=WIDTH, expansion_factor=WIDTH // 384, k=k)
    assert cfg["sae_type"] == "TOPK"  # upper case, as the library writes it
    sub = f"{k}_{cfg['expansion_factor']}"
    folder = root / sub
    folder.mkdir(parents=True)
    w = _dictionary(dense, 1)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    tensors = {"encoder.weight": w["W"], "encoder.bias": w["b_enc"], "W_dec": w["W"].clone()}
    save_file({**tensors, "b_dec": w["b_dec"]}, str(folder / "sae.safetensors"))
    return sub


def _sparsify_checkpoint(root: Path, tokens: torch.Tensor) -> None:
    """A sparsify trainer checkpoint: config.json naming the model, state.pt, layers.N/ folders."""
    base = FIXTURES / "sparsify-1.3" / "trainer-root"
    cfg = json.loads((base / "layers.0" / "cfg.json").read_text())
    cfg.update(d_in=384, num_latents=WIDTH, k=8)
    w = _dictionary(tokens, 2)
    folder = root / "layers.5"
    folder.mkdir(parents=True)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    tensors = {"encoder.weight": w["W"], "encoder.bias": w["b_enc"], "W_dec": w["W"].clone()}
    save_file({**tensors, "b_dec": w["b_dec"]}, str(folder / "sae.safetensors"))
    run = json.loads((base / "config.json").read_text())
    assert run["model"] == MINILM
    (root / "config.json").write_text(json.dumps(run))
    (root / "state.pt").write_bytes((base / "state.pt").read_bytes())


def _recall(index: LatentIndex, queries, qrels, mode: str, k: int = 10) -> float:
    found = []
    for q in queries:
        hits = index.search(q["text"], k=k, mode=mode)
        assert hits, (mode, q["text"])
        relevant = qrels[q["_id"]]
        found.append(len(relevant & {h.doc_id for h in hits}) / len(relevant))
    return sum(found) / len(found)


def _index_and_search(sae, backbone, limit, tmp_path: Path) -> dict[str, float]:
    docs, queries, qrels = limit
    encoder = LatentTermEncoder(sae, backbone, batch_size=16)
    texts = [d.text for d in docs]
    with pytest.raises(ConfigError, match="calibrate_avgdl"):
        encoder.encode_documents(texts[:2])
    avgdl = encoder.calibrate_avgdl(texts)
    assert avgdl > 0 and sae.cfg.avgdl == pytest.approx(avgdl)
    index = LatentIndex(encoder, tmp_path / "store", collection="limit", lexical=False)
    try:
        index.add(texts, ids=[d.id for d in docs])
        assert index.count() == len(docs)
        hits = index.search(queries[0]["text"], k=5, mode="sparse")
        assert hits and all(h.score > 0 for h in hits)  # latent-leg scores
        return {mode: _recall(index, queries, qrels, mode) for mode in ("sparse", "hybrid")}
    finally:
        index.close()


def test_pooled_latentsae_indexes_limit_small(backbone, limit, tmp_path):
    docs, _, _ = limit
    dense = backbone.forward([d.text for d in docs]).dense.float()
    sub = _latentsae_repo(tmp_path / "repo", dense)
    # a local folder in the Hub layout; latentsae configs name no backbone: pass it
    sae = from_pretrained(str(tmp_path / "repo"), subfolder=sub, backbone=MINILM)
    assert (sae.cfg.mode, sae.cfg.architecture, sae.cfg.width) == ("pooled", "topk", WIDTH)
    recall = _index_and_search(sae, backbone, limit, tmp_path)
    chance = 10 / len(docs)
    # LIMIT is hard for MiniLM embeddings; the latent leg alone still beats chance (0.35 measured)
    assert recall["sparse"] > chance, recall
    assert recall["hybrid"] > chance, recall


def test_token_mode_sparsify_indexes_limit_small(backbone, limit, tmp_path):
    docs, _, _ = limit
    tokens = backbone.forward([d.text for d in docs[:20]]).token_states.float()
    _sparsify_checkpoint(tmp_path / "ckpt", tokens)
    sae = from_pretrained(str(tmp_path / "ckpt"), subfolder="layers.5")  # backbone from config.json
    assert (sae.cfg.mode, sae.cfg.backbone, sae.cfg.k) == ("token", MINILM, 8)
    recall = _index_and_search(sae, backbone, limit, tmp_path)
    chance = 10 / len(docs)
    assert recall["sparse"] > chance, recall  # recall@10 over 60 queries: 0.29 measured
    assert recall["hybrid"] > chance, recall
