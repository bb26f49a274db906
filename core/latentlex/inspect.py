"""Diagnostics of a trained SAE, and a static HTML report of its latents.

:func:`inspect_sae` gathers

- FVU / L0 / dead latents from ``cfg.json``'s training metrics, and re-measured on a corpus when
  one is given (FVU over all the corpus' token states, L0 per token, dead and always-on latents);
- the rank–frequency (Zipf) curve of the latent vocabulary: document frequency of each latent,
  log–log, with a fitted exponent (``zipf.png``), and a histogram of latent frequencies
  (``frequency.png``);
- the latents closest to a word: by the SAE's activations on the word's token states, by decoder
  cosine to its (mean) token state, and among the labels' top words;
- a single-file HTML report (:func:`write_report`): a searchable, sortable table of the latents
  with labels, frequencies and examples, no external assets.

Example:
    >>> info = inspect_sae("my-sae", texts, word="quokka", out_dir="report")  # doctest: +SKIP
    >>> info["zipf"]["exponent"], info["files"]["report"]  # doctest: +SKIP
    (1.12, 'report/report.html')
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .errors import ConfigError, LatentLexError
from .labels import LABELS_NAME, LatentLabel, LatentLabels, load_labels

if TYPE_CHECKING:
    from .backbone import Backbone
    from .sae import SparseAutoencoder

logger = logging.getLogger(__name__)

__all__ = [
    "CorpusStats",
    "inspect_sae",
    "latents_for_word",
    "measure_corpus",
    "plot_frequencies",
    "plot_zipf",
    "write_report",
    "zipf_fit",
]


# ----------------------------------------------------------------------------- measuring


@dataclass
class CorpusStats:
    """What an SAE does on a corpus."""

    n_docs: int
    n_rows: int
    """Rows encoded: token states (token mode) or texts (pooled mode)."""
    fvu: float
    """Fraction of variance unexplained over all rows."""
    l0: float
    """Mean active latents per row."""
    fires: np.ndarray
    """[width] rows each latent is active on."""
    doc_fires: np.ndarray
    """[width] texts each latent is active on at least once."""

    @property
    def frequency(self) -> np.ndarray:
        return self.fires / max(self.n_rows, 1)

    @property
    def doc_frequency(self) -> np.ndarray:
        return self.doc_fires / max(self.n_docs, 1)


def measure_corpus(
    sae: SparseAutoencoder,
    backbone: Backbone,
    texts: Iterable[str],
    *,
    max_docs: int | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> CorpusStats:
    """Encode ``texts`` and measure FVU, L0 and per-latent frequencies (streamed, bounded memory).

    Example:
        >>> stats = measure_corpus(sae, backbone, ["a text", "another"])  # doctest: +SKIP
        >>> stats.fvu, stats.l0  # doctest: +SKIP
        (0.35, 16.0)
    """
    width = sae.cfg.width
    fires = np.zeros(width, np.int64)
    doc_fires = np.zeros(width, np.int64)
    sq_err = sum_sq = 0.0
    sum_x = torch.zeros(sae.cfg.d_in, dtype=torch.float64)
    n_rows = n_docs = active_total = 0
    items = list(islice(texts, max_docs) if max_docs is not None else texts)
    bar = tqdm(total=len(items), desc="measuring", unit="doc", disable=not progress, leave=False)
    with torch.inference_mode():
        for _, batch in backbone.iter_batches(items, batch_size=batch_size):
            if sae.cfg.mode == "token":
                x, lengths = batch.token_states, batch.lengths
            else:
                x, lengths = batch.dense, torch.ones(batch.dense.shape[0], dtype=torch.long)
            out = sae.encode(x)
            if sae.cfg.input_norm == "none":
                x_hat = sae.decode(out.top_acts, out.top_indices)
            else:  # a converted SAE normalising each input: compare in the input's own space
                x_hat = sae.reconstruct(x)
            x_hat = x_hat.to(torch.float64).cpu()
            xd = x.to(torch.float64).cpu()
            sq_err += float((xd - x_hat).pow(2).sum())
            sum_sq += float(xd.pow(2).sum())
            sum_x += xd.sum(0)
            n_rows += xd.shape[0]
            acts = out.top_acts.cpu().numpy()
            idx = out.top_indices.cpu().numpy()
            active = acts > 0
            active_total += int(active.sum())
            fires += np.bincount(idx[active], minlength=width)
            n = int(lengths.numel())
            row_doc = np.repeat(np.arange(n), lengths.cpu().numpy())
            keys = np.unique((row_doc[:, None] * width + idx)[active])
            doc_fires += np.bincount(keys % width, minlength=width)
            n_docs += n
            bar.update(n)
    bar.close()
    if n_rows == 0:
        raise ConfigError("the corpus gave no rows to measure (empty texts?)")
    total_var = sum_sq - float(sum_x.pow(2).sum()) / n_rows
    fvu = sq_err / total_var if total_var > 0 else float("nan")
    return CorpusStats(n_docs, n_rows, fvu, active_total / n_rows, fires, doc_fires)


def zipf_fit(frequencies: Iterable[float] | np.ndarray) -> dict[str, float]:
    """Fit ``log f = c - s log rank`` to the non-zero frequencies sorted in decreasing order.

    Returns:
        ``{"exponent": s, "intercept": c, "r2": ..., "n": ...}`` (log base 10).

    Example:
        >>> ranks = np.arange(1, 101)
        >>> round(zipf_fit(1000.0 / ranks)["exponent"], 3)
        1.0
    """
    f = np.sort(np.asarray(list(frequencies), dtype=np.float64))[::-1]
    f = f[f > 0]
    if f.size < 2:
        raise ConfigError("a Zipf fit needs at least two latents with non-zero frequency")
    lr = np.log10(np.arange(1, f.size + 1))
    lf = np.log10(f)
    slope, intercept = np.polyfit(lr, lf, 1)
    pred = intercept + slope * lr
    ss_tot = float(((lf - lf.mean()) ** 2).sum())
    r2 = 1.0 - float(((lf - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0
    return {"exponent": float(-slope), "intercept": float(intercept), "r2": r2, "n": int(f.size)}


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise LatentLexError("plots need matplotlib: pip install 'latentlex[eval]'") from e
    return plt


def plot_zipf(
    doc_frequency: np.ndarray,
    path: str | os.PathLike[str],
    *,
    fit: Mapping[str, float] | None = None,
    labels: Mapping[int, str] | None = None,
    title: str = "Latent vocabulary: rank–frequency",
    annotate: int = 5,
) -> Path:
    """Log–log rank–frequency plot of latents' document frequencies, with the fitted line."""
    plt = _pyplot()
    freq = np.asarray(doc_frequency, dtype=np.float64)
    order = np.argsort(-freq, kind="stable")
    order = order[freq[order] > 0]
    f = freq[order]
    fit = fit or zipf_fit(f)
    ranks = np.arange(1, f.size + 1)
    fig, ax = plt.subplots(figsize=(7, 4.8), dpi=110)
    ax.loglog(ranks, f, ".", ms=4, color="#2b6cb0", label=f"{f.size} active latents")
    line = 10 ** (fit["intercept"] - fit["exponent"] * np.log10(ranks))
    ax.loglog(
        ranks,
        line,
        "-",
        color="#c05621",
        lw=1.5,
        label=f"fit: exponent {fit['exponent']:.2f} (R² {fit['r2']:.2f})",
    )
    top_lines = [
        f"#{int(order[r])}  {(labels or {})[int(order[r])][:32]}"
        for r in range(min(annotate, f.size))
        if labels and int(order[r]) in labels
    ]
    if top_lines:
        ax.text(
            0.98, 0.97, "most frequent:\n" + "\n".join(top_lines), transform=ax.transAxes,
            ha="right", va="top", fontsize=7, color="#333", multialignment="left",
            bbox={"boxstyle": "round", "fc": "white", "ec": "#cbd5e0", "alpha": 0.9},
        )  # fmt: skip
    ax.set_xlabel("rank of latent (by document frequency)")
    ax.set_ylabel("document frequency")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def plot_frequencies(
    frequency: np.ndarray, path: str | os.PathLike[str], *, what: str = "token"
) -> Path:
    """Histogram of log10 latent frequencies (dead latents counted in the title)."""
    plt = _pyplot()
    freq = np.asarray(frequency, dtype=np.float64)
    alive = freq[freq > 0]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    if alive.size:
        ax.hist(np.log10(alive), bins=40, color="#2b6cb0", alpha=0.85)
    ax.set_xlabel(f"log10 frequency (share of {what}s the latent fires on)")
    ax.set_ylabel("latents")
    ax.set_title(f"Latent frequencies: {alive.size} alive, {freq.size - alive.size} dead")
    ax.grid(True, alpha=0.25)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def latents_for_word(
    word: str,
    sae: SparseAutoencoder,
    backbone: Backbone,
    *,
    top: int = 10,
    labels: LatentLabels | None = None,
) -> dict[str, Any]:
    """The latents closest to ``word``.

    - ``by_activation``: the SAE's activations on the word's token states (summed over pieces);
    - ``by_decoder_cosine``: cosine between each decoder atom and the word's mean token state
      (minus the decoder bias, the point the SAE encodes from);
    - ``in_labels``: latents whose top words (from ``labels``) include the word.

    Example:
        >>> latents_for_word("quokka", sae, backbone)["by_activation"][0]  # doctest: +SKIP
        {'latent': 17, 'activation': 2.4, 'label': 'quokkas / tapirs / otters'}
    """
    if not isinstance(word, str) or not word.strip():
        raise ConfigError("word must be a non-empty string")
    names = labels.as_label_map() if labels is not None else {}
    with torch.inference_mode():
        batch = backbone.forward([word.strip()])
        x = batch.dense if sae.cfg.mode == "pooled" else batch.token_states
        if x.shape[0] == 0:
            raise ConfigError(f"{word!r} gives no token states")
        out = sae.encode(x)
        mass = torch.zeros(sae.cfg.width, dtype=torch.float64)
        mass.index_add_(
            0, out.top_indices.reshape(-1).cpu(), out.top_acts.reshape(-1).double().cpu()
        )
        v = (x.mean(0).to(sae.W_dec.dtype) - sae.b_dec).to(sae.W_dec.device)
        cos = torch.nn.functional.cosine_similarity(sae.W_dec, v[None, :], dim=1).cpu()
    ids = backbone.tokenizer(word.strip(), add_special_tokens=False)["input_ids"]
    act_order = torch.argsort(-mass, stable=True)[:top]
    by_act = [
        {"latent": int(j), "activation": round(float(mass[j]), 4), "label": names.get(int(j))}
        for j in act_order.tolist()
        if mass[j] > 0
    ]
    cos_order = torch.argsort(-cos, stable=True)[:top]
    by_cos = [
        {"latent": int(j), "cosine": round(float(cos[j]), 4), "label": names.get(int(j))}
        for j in cos_order.tolist()
    ]
    in_labels: list[dict[str, Any]] = []
    if labels is not None:
        w = word.strip().lower()
        for j, lab in labels.latents.items():
            for rank, (tw, count, mean_act) in enumerate(lab.top_words):
                if tw == w or tw.rstrip("s") == w.rstrip("s"):
                    in_labels.append(
                        {"latent": j, "rank": rank + 1, "count": count,
                         "mean_activation": round(mean_act, 4), "label": lab.display}
                    )  # fmt: skip
                    break
        in_labels.sort(key=lambda d: (d["rank"], -d["count"], d["latent"]))
        in_labels = in_labels[:top]
    return {
        "word": word,
        "tokens": backbone.tokenizer.convert_ids_to_tokens(ids),
        "by_activation": by_act,
        "by_decoder_cosine": by_cos,
        "in_labels": in_labels,
    }


# ----------------------------------------------------------------------------- the whole picture


def inspect_sae(
    sae_dir: str | os.PathLike[str],
    corpus_texts: Iterable[str] | None = None,
    backbone: Backbone | str | None = None,
    *,
    word: str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    max_docs: int | None = None,
    always_on: float = 0.9,
    top: int = 10,
    progress: bool = False,
) -> dict[str, Any]:
    """Diagnose the SAE in ``sae_dir``; with ``out_dir``, write plots, a JSON and an HTML report.

    Args:
        sae_dir: the SAE folder (its ``labels.json`` is used when present).
        corpus_texts: texts to re-measure FVU/L0/dead latents and the Zipf curve on.
        backbone: the backbone (default: the one the SAE names; needed only with a corpus or word).
        word: also list the latents closest to this word.
        out_dir: where ``zipf.png``, ``frequency.png``, ``inspect.json`` and ``report.html`` go.
        max_docs: use at most this many texts.
        always_on: a latent firing in at least this share of texts is reported as always-on.
        top: list lengths (always-on latents, word neighbours).
        progress: show a progress bar.

    Returns:
        A JSON-ready dict: ``sae``, ``trained`` (cfg metrics), ``corpus`` (re-measured, or None),
        ``zipf`` (exponent, r2, source), ``word`` and ``files``.

    Example:
        >>> info = inspect_sae("my-sae", texts, out_dir="inspect")  # doctest: +SKIP
        >>> round(info["corpus"]["fvu"], 2), info["zipf"]["exponent"] > 0  # doctest: +SKIP
        (0.35, True)
    """
    from .sae import SparseAutoencoder

    if not 0 < always_on <= 1:
        raise ConfigError(f"always_on must be in (0, 1], got {always_on}")
    folder = Path(sae_dir)
    sae = SparseAutoencoder.load(folder)
    sae.eval()
    cfg = sae.cfg
    labels = load_labels(folder) if (folder / LABELS_NAME).is_file() else None
    names = labels.as_label_map() if labels is not None else {}
    result: dict[str, Any] = {
        "sae": {
            "path": str(folder),
            "architecture": cfg.architecture,
            "mode": cfg.mode,
            "width": cfg.width,
            "k": cfg.k,
            "backbone": cfg.backbone,
            "fingerprint": sae.fingerprint(),
            "labelled": len(labels) if labels is not None else 0,
        },
        "trained": {
            key: cfg.metrics[key] for key in ("fvu", "l0", "dead_pct") if key in cfg.metrics
        },
        "corpus": None,
        "zipf": None,
        "word": None,
        "files": {},
    }
    bb: Backbone | None = None
    if corpus_texts is not None or word is not None:
        from .terms import LatentTermEncoder

        enc = LatentTermEncoder(sae, backbone)
        bb = enc.backbone
    doc_freq: np.ndarray | None = None
    freq: np.ndarray | None = None
    zipf_source = None
    stats: CorpusStats | None = None
    if corpus_texts is not None:
        assert bb is not None
        if isinstance(corpus_texts, str):
            raise TypeError("corpus_texts must be an iterable of strings, not a single string")
        stats = measure_corpus(sae, bb, corpus_texts, max_docs=max_docs, progress=progress)
        doc_freq, freq = stats.doc_frequency, stats.frequency
        dead = np.flatnonzero(stats.fires == 0)
        on = np.flatnonzero(doc_freq >= always_on)
        on = on[np.argsort(-doc_freq[on], kind="stable")]
        result["corpus"] = {
            "n_docs": stats.n_docs,
            "n_rows": stats.n_rows,
            "fvu": round(stats.fvu, 6),
            "l0": round(stats.l0, 4),
            "dead": int(dead.size),
            "dead_pct": round(100.0 * dead.size / cfg.width, 4),
            "dead_latents": dead[:200].tolist(),
            "always_on": [
                {
                    "latent": int(j),
                    "doc_frequency": round(float(doc_freq[j]), 4),
                    "label": names.get(int(j)),
                }
                for j in on[:top]
            ],
            "always_on_count": int(on.size),
        }
        zipf_source = "corpus"
    elif labels is not None and labels.latents:
        doc_freq = np.zeros(cfg.width)
        freq = np.zeros(cfg.width)
        for j, lab in labels.latents.items():
            if j < cfg.width:
                doc_freq[j] = lab.doc_frequency if lab.doc_frequency is not None else lab.frequency
                freq[j] = lab.frequency
        zipf_source = "labels.json"
    if doc_freq is not None and int((doc_freq > 0).sum()) >= 2:
        result["zipf"] = {**zipf_fit(doc_freq), "source": zipf_source}
    if word is not None:
        assert bb is not None
        result["word"] = latents_for_word(word, sae, bb, top=top, labels=labels)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files: dict[str, str] = {}
        what = "token" if cfg.mode == "token" else "text"
        if doc_freq is not None and result["zipf"] is not None:
            assert freq is not None
            files["zipf"] = str(
                plot_zipf(doc_freq, out / "zipf.png", fit=result["zipf"], labels=names)
            )
            files["frequency"] = str(plot_frequencies(freq, out / "frequency.png", what=what))
        else:
            logger.info("no corpus and no labels.json: no Zipf plot (pass corpus_texts)")
        report_labels = labels
        if report_labels is None and stats is not None:
            report_labels = LatentLabels(
                {
                    int(j): LatentLabel(
                        "(unlabelled: run latentlex label)",
                        frequency=float(stats.frequency[j]),
                        doc_frequency=float(stats.doc_frequency[j]),
                    )
                    for j in np.flatnonzero(stats.fires).tolist()
                }
            )
        files["json"] = str(out / "inspect.json")
        if report_labels is not None:
            files["report"] = str(
                write_report(
                    report_labels,
                    out / "report.html",
                    title=f"latentlex SAE: {folder.name}",
                    summary=_summary(result),
                    images={k: Path(v) for k, v in files.items() if k in ("zipf", "frequency")},
                )
            )
        result["files"] = files
        (out / "inspect.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def _summary(info: Mapping[str, Any]) -> dict[str, str]:
    s, t, c, z = info["sae"], info["trained"], info["corpus"], info["zipf"]
    out = {
        "mode": f"{s['mode']} ({s['architecture']})",
        "width / k": f"{s['width']:,} / {s['k']}",
        "backbone": str(s["backbone"]),
        "labelled latents": f"{s['labelled']:,}",
    }
    if t:
        out["FVU (training)"] = _fmt(t.get("fvu", float("nan")))
        out["L0 (training)"] = _fmt(t.get("l0", float("nan")), 1)
        out["dead % (training)"] = _fmt(t.get("dead_pct", float("nan")), 1)
    if c:
        out["FVU (corpus)"] = _fmt(c["fvu"])
        out["L0 (corpus)"] = _fmt(c["l0"], 1)
        out["dead (corpus)"] = f"{c['dead']:,} ({c['dead_pct']:.1f} %)"
        out["texts measured"] = f"{c['n_docs']:,}"
    if z:
        out["Zipf exponent"] = f"{z['exponent']:.2f} (R² {z['r2']:.2f}, {z['source']})"
    return out


# ----------------------------------------------------------------------------- HTML report

_CSS = """
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
sans-serif;color:#1a202c;background:#f7f8fa}header{background:#1e3a5f;color:#fff;padding:18px 28px}
h1{margin:0;font-size:20px;font-weight:600}header p{margin:4px 0 0;opacity:.8;font-size:13px}
main{padding:18px 28px}.cards{display:flex;flex-wrap:wrap;gap:10px;margin-bottom:16px}
.card{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:8px 12px;min-width:130px}
.card b{display:block;font-size:11px;text-transform:uppercase;color:#718096;font-weight:600;
letter-spacing:.03em}.card span{font-size:15px}.plots{display:flex;flex-wrap:wrap;gap:12px;
margin-bottom:16px}.plots img{background:#fff;border:1px solid #e2e8f0;border-radius:8px;
max-width:min(100%,560px)}.bar{display:flex;align-items:center;gap:12px;margin:8px 0 10px}
#q{flex:0 1 420px;padding:8px 12px;border:1px solid #cbd5e0;border-radius:6px;font-size:14px}
#count{color:#4a5568}.bar label{color:#4a5568;font-size:13px}
table{width:100%;border-collapse:collapse;background:#fff;
border:1px solid #e2e8f0}th{position:sticky;top:0;background:#edf2f7;text-align:left;
padding:8px;font-size:12px;color:#2d3748;cursor:pointer;user-select:none;white-space:nowrap;
border-bottom:1px solid #cbd5e0}th.num,td.num{text-align:right;white-space:nowrap}
th[data-dir=asc]::after{content:" ▲"}th[data-dir=desc]::after{content:" ▼"}
td{padding:7px 8px;border-top:1px solid #edf2f7;vertical-align:top}td.words{width:26%}
td.exs{width:40%}tr:nth-child(even) td{background:#fbfcfd}td.id{font-family:ui-monospace,monospace;
color:#4a5568}.label{font-weight:600}.desc{color:#2b6cb0;font-size:13px}
.chip{display:inline-block;background:#ebf4ff;color:#2c5282;border-radius:10px;padding:1px 8px;
margin:1px 3px 1px 0;font-size:12px}.chip i{color:#718096;font-style:normal;margin-left:3px}
.ex{font-size:12.5px;color:#4a5568;margin:0 0 3px}mark{background:#fefcbf;color:#1a202c;
padding:0 1px;border-radius:2px}.meter{height:4px;background:#e2e8f0;border-radius:2px;
margin-top:3px}.meter div{height:4px;background:#3182ce;border-radius:2px}
"""

_JS = """
(function(){
var q=document.getElementById('q'),ex=document.getElementById('ex'),
rows=[].slice.call(document.querySelectorAll('tr.lat')),
count=document.getElementById('count'),body=document.querySelector('tbody');
function apply(){var terms=q.value.toLowerCase().split(/\\s+/).filter(Boolean),n=0;
rows.forEach(function(r){var s=r.getAttribute('data-s');
if(ex.checked)s+=' '+r.getAttribute('data-x');
var ok=terms.every(function(t){return s.indexOf(t)>=0||('#'+r.getAttribute('data-id'))===t});
r.hidden=!ok;if(ok)n++;});count.textContent=n+' of '+rows.length+' latents';}
q.addEventListener('input',apply);ex.addEventListener('change',apply);
[].forEach.call(document.querySelectorAll('th[data-key]'),function(th){
th.addEventListener('click',function(){var key=th.getAttribute('data-key'),
num=th.classList.contains('num'),dir=th.getAttribute('data-dir')==='desc'?'asc':'desc';
[].forEach.call(document.querySelectorAll('th'),function(h){h.removeAttribute('data-dir')});
th.setAttribute('data-dir',dir);rows.sort(function(a,b){var x=a.getAttribute('data-'+key),
y=b.getAttribute('data-'+key);if(num){x=parseFloat(x);y=parseFloat(y);}
var c=x<y?-1:x>y?1:0;return dir==='asc'?c:-c;});
rows.forEach(function(r){body.appendChild(r)});});});
var m=/[#&?]q=([^&]*)/.exec(location.hash+location.search);
if(m){q.value=decodeURIComponent(m[1].replace(/\\+/g,' '));}
if(/[#&?]ex=1/.test(location.hash+location.search)){ex.checked=true;}
apply();document.body.setAttribute('data-ready','1');
})();
"""


def _example_html(ex: Mapping[str, Any]) -> str:
    text = str(ex.get("text", ""))
    s, e = int(ex.get("start", 0) or 0), int(ex.get("end", 0) or 0)
    if 0 <= s < e <= len(text):
        pre, word, post = html.escape(text[:s]), html.escape(text[s:e]), html.escape(text[e:])
        body = f"{pre}<mark>{word}</mark>{post}"
    else:
        body = html.escape(text)
    act = ex.get("act")
    tip = f' title="activation {float(act):.3g}"' if isinstance(act, int | float) else ""
    return f'<p class="ex"{tip}>{body}</p>'


def _row_html(j: int, lab: LatentLabel, max_freq: float, max_examples: int, n_words: int) -> str:
    df = lab.doc_frequency if lab.doc_frequency is not None else lab.frequency
    words = "".join(
        f'<span class="chip">{html.escape(w)}<i>{c}</i></span>'
        for w, c, _ in lab.top_words[:n_words]
    )
    examples = "".join(_example_html(ex) for ex in lab.examples[:max_examples])
    search = " ".join(
        [f"#{j}", lab.label, lab.description or "", *(w for w, _, _ in lab.top_words)]
    ).lower()
    in_examples = " ".join(str(ex.get("text", "")) for ex in lab.examples[:max_examples]).lower()
    width = 100.0 * lab.frequency / max_freq if max_freq > 0 else 0.0
    desc = f'<div class="desc">{html.escape(lab.description)}</div>' if lab.description else ""
    return (
        f'<tr class="lat" data-id="{j}" data-label="{html.escape(lab.display.lower())}" '
        f'data-freq="{lab.frequency:.8g}" data-df="{df:.8g}" data-s="{html.escape(search)}" '
        f'data-x="{html.escape(in_examples)}">'
        f'<td class="id num">{j}</td>'
        f'<td><div class="label">{html.escape(lab.label)}</div>{desc}</td>'
        f'<td class="words">{words}</td>'
        f'<td class="num">{100 * lab.frequency:.3f} %<div class="meter"><div style="width:'
        f'{width:.1f}%"></div></div></td>'
        f'<td class="num">{100 * df:.1f} %</td>'
        f'<td class="exs">{examples}</td></tr>'
    )


def write_report(
    labels: LatentLabels,
    path: str | os.PathLike[str],
    *,
    title: str = "latentlex: latent labels",
    summary: Mapping[str, str] | None = None,
    images: Mapping[str, str | os.PathLike[str]] | None = None,
    max_latents: int | None = None,
    max_examples: int = 3,
    n_words: int = 8,
) -> Path:
    """Write a single static HTML file: a searchable, sortable table of the latents.

    Plots are inlined as data URIs and the search/sort script is inline: the file opens anywhere,
    offline. ``report.html#q=quokka`` opens with the search filled in (``&ex=1``: search the
    examples too).

    Args:
        labels: the latents to show (label, description, top words, frequencies, examples).
        path: the ``.html`` file to write.
        title: page title.
        summary: ``{name: value}`` cards shown above the table.
        images: ``{name: png path}`` shown above the table.
        max_latents: show only the most frequent ones.
        max_examples / n_words: examples and top words per row.

    Example:
        >>> write_report(load_labels("my-sae"), "latents.html")  # doctest: +SKIP
        PosixPath('latents.html')
    """
    items = sorted(labels.latents.items())
    if max_latents is not None:
        items = sorted(items, key=lambda kv: -kv[1].frequency)[:max_latents]
        items.sort()
    max_freq = max((lab.frequency for _, lab in items), default=0.0)
    cards = "".join(
        f'<div class="card"><b>{html.escape(k)}</b><span>{html.escape(str(v))}</span></div>'
        for k, v in (summary or {}).items()
    )
    plots = []
    for name, img in (images or {}).items():
        data = base64.b64encode(Path(img).read_bytes()).decode("ascii")
        plots.append(f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">')
    meta = labels.meta
    sub = f"{len(labels):,} labelled latents"
    if meta.get("n_docs"):
        sub += f" · labels from {meta['n_docs']:,} texts"
    if meta.get("n_tokens"):
        sub += f", {meta['n_tokens']:,} tokens"
    rows = "\n".join(_row_html(j, lab, max_freq, max_examples, n_words) for j, lab in items)
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{_CSS}</style></head>
<body><header><h1>{html.escape(title)}</h1><p>{html.escape(sub)}</p></header><main>
<div class="cards">{cards}</div>
<div class="plots">{"".join(plots)}</div>
<div class="bar"><input id="q" type="search" placeholder="Search labels, top words, #id"
 autocomplete="off"><label><input id="ex" type="checkbox"> also search examples</label>
<span id="count">{len(items)} latents</span></div>
<table><thead><tr><th class="num" data-key="id">Latent</th><th data-key="label">Label</th>
<th>Top words</th><th class="num" data-key="freq">Frequency</th>
<th class="num" data-key="df">Texts</th><th>Strongest examples</th></tr></thead>
<tbody>
{rows}
</tbody></table></main>
<script>{_JS}</script></body></html>
"""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(doc, encoding="utf-8")
    return out
