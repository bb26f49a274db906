"""Share SAEs through the Hugging Face Hub: :func:`from_pretrained`, :func:`push_to_hub`.

Loading looks for a local folder first, then the Hub: :mod:`latentlex.hub_download` fetches and
verifies only the files the SAE needs (cache-first, ``revision`` pinning, offline use), and
:func:`latentlex.loading.load_folder` reads the folder, converting SAEs of other libraries
(EleutherAI sparsify, enjalot's latentsae, SAELens TopK / JumpReLU: :mod:`latentlex.converters`).
Safetensors and JSON only: a repository offering only pickled weights is refused. Pushing
validates the SAE locally, writes a model card (:mod:`latentlex.card`) and uploads.

Example:
    >>> from latentlex.hub import from_pretrained
    >>> sae = from_pretrained(  # doctest: +SKIP
    ...     "enjalot/sae-all-MiniLM-L6-v2-FineWeb-RedPajama-Pile-150M",
    ...     subfolder="64_8",
    ...     backbone="sentence-transformers/all-MiniLM-L6-v2",
    ... )
    >>> sae.cfg.mode  # doctest: +SKIP
    'pooled'
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._clireg import Commands, Handler, add_commands
from .card import CARD_NAME, model_card
from .errors import ConfigError, HubError, SAEFormatError
from .hub_download import (
    CONFIG_NAME,
    check_repo_id,
    check_revision,
    clean_relpath,
    endpoint,
    hub_call,
    hub_folder,
    inside,
    library_version,
    offline,
)
from .labelfile import LABELS_NAME
from .loading import load_folder
from .sae import SAE_WEIGHTS_NAME, SparseAutoencoder
from .safeio import MAX_LABELS_BYTES, read_json_capped, sandbox

if TYPE_CHECKING:
    import torch

    from .backbone import Backbone

__all__ = [
    "CLI_COMMANDS",
    "UPLOAD_FILES",
    "add_cli",
    "from_pretrained",
    "model_card",
    "push_to_hub",
    "stage_for_upload",
]

logger = logging.getLogger(__name__)

UPLOAD_FILES = (CONFIG_NAME, SAE_WEIGHTS_NAME, LABELS_NAME, CARD_NAME)
"""What :func:`push_to_hub` uploads (``labels.json`` only when present)."""


# ----------------------------------------------------------------------------- loading


def from_pretrained(
    repo_id_or_path: str | os.PathLike[str],
    revision: str | None = None,
    subfolder: str | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    backbone: str | Backbone | None = None,
    *,
    sae_format: str | None = None,
    mode: str | None = None,
    dtype: str | torch.dtype = "float32",
) -> SparseAutoencoder:
    """Load an SAE from a local folder or a Hugging Face Hub repository.

    Args:
        repo_id_or_path: a local folder, or a Hub model id ``"namespace/name"``.
        revision: branch, tag or commit sha on the Hub (default: the main branch).
        subfolder: the folder inside the repository (or local folder) holding the SAE, e.g.
            ``"64_8"`` for latentsae repositories.
        token: a Hub token for private repositories (default: huggingface_hub's login).
        local_files_only: use the Hub cache only (also when ``HF_HUB_OFFLINE=1``).
        cache_dir: the Hub cache folder (default: huggingface_hub's).
        device: where to put the weights.
        backbone: the backbone's name or a loaded :class:`~latentlex.backbone.Backbone`; needed
            when a foreign config does not name a sentence-transformers model (its dimension is
            checked).
        sae_format: force a format: ``"latentlex"``, ``"sparsify"``, ``"latentsae"``,
            ``"saelens"`` (default: detected).
        mode: ``"token"`` or ``"pooled"`` for a foreign SAE (default: the format's; latentsae
            SAEs are pooled).
        dtype: ``"float32"`` (default) computes in fp32 whatever the file holds; ``"file"``
            computes in the file's dtype, as the source library does (see
            :func:`latentlex.sae.load_dtype`).

    Returns:
        The SAE, in eval mode. A converted SAE has no calibrated ``avgdl``: run
        ``LatentTermEncoder(sae).calibrate_avgdl(texts)`` before encoding documents.

    Raises:
        SAEFormatError: missing, corrupt or pickled-only files; unsupported variants; sizes over
            the limits.
        ConfigError: bad arguments (repo id, subfolder, revision, mode), or a backbone needed.
        HubError: the Hub refused the request or cannot be reached and nothing is cached.

    Example:
        >>> sae = from_pretrained("my-sae-folder")  # doctest: +SKIP
        >>> sae = from_pretrained("me/minilm-latent-terms", revision="v1")  # doctest: +SKIP
    """
    sae, _ = _load(
        repo_id_or_path,
        revision=revision,
        subfolder=subfolder,
        token=token,
        local_files_only=local_files_only,
        cache_dir=cache_dir,
        device=device,
        backbone=backbone,
        sae_format=sae_format,
        mode=mode,
        dtype=dtype,
    )
    return sae


def _load(
    repo_id_or_path: str | os.PathLike[str],
    *,
    revision: str | None,
    subfolder: str | None,
    token: str | bool | None,
    local_files_only: bool,
    cache_dir: str | os.PathLike[str] | None,
    device: Any,
    backbone: Any,
    sae_format: str | None,
    mode: str | None,
    dtype: str | torch.dtype = "float32",
) -> tuple[SparseAutoencoder, Path]:
    """:func:`from_pretrained`, also returning the folder the SAE was read from."""
    sub = clean_relpath(subfolder, "subfolder")
    revision = check_revision(revision)
    text = os.fspath(repo_id_or_path)
    local = Path(text).expanduser()
    kwargs: dict[str, Any] = {
        "sae_format": sae_format,
        "backbone": backbone,
        "mode": mode,
        "device": device,
        "dtype": dtype,
    }
    if local.is_dir():
        folder = inside(local, sub)
        return load_folder(folder, **kwargs), folder
    if text.startswith((".", "/", "~")) or "\\" in text or text.count("/") != 1:
        raise SAEFormatError(f"{text}: no such SAE folder (and not a Hub id 'namespace/name')")
    repo_id = check_repo_id(text)
    cache = os.fspath(cache_dir) if cache_dir is not None else None
    folder = hub_folder(repo_id, revision, sub, token, local_files_only, cache, sae_format)
    name = sub.rsplit("/", 1)[-1] if sub else repo_id.split("/")[-1]
    storage = next((p.parent for p in folder.parents if p.name == "snapshots"), folder)
    with sandbox(storage):  # a snapshot's files are links into the repository's blobs/
        return load_folder(folder, folder_name=name, **kwargs), folder


# ----------------------------------------------------------------------------- pushing


def stage_for_upload(
    sae_or_folder: SparseAutoencoder | str | os.PathLike[str],
    repo_id: str,
    out_dir: str | os.PathLike[str],
) -> Path:
    """Validate an SAE and write exactly what :func:`push_to_hub` uploads into ``out_dir``.

    The SAE is saved (or its folder copied), loaded back and compared, ``labels.json`` is parsed,
    and a model card ``README.md`` is written. Nothing leaves the machine: this is the
    ``--dry-run`` of ``latentlex push``.

    Raises:
        SAEFormatError: the SAE does not load back identically or ``labels.json`` is invalid.

    Example:
        >>> stage_for_upload("my-sae", "me/minilm-latent-terms", "my-sae")  # doctest: +SKIP
        PosixPath('my-sae')
    """
    check_repo_id(repo_id)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    expected_fp = None
    if isinstance(sae_or_folder, SparseAutoencoder):
        sae_or_folder.save(out)
        expected_fp = sae_or_folder.fingerprint()
    else:
        src = Path(sae_or_folder)
        if not src.is_dir():
            raise SAEFormatError(f"{src}: no such SAE folder")
        for name in (CONFIG_NAME, SAE_WEIGHTS_NAME, LABELS_NAME):
            if (src / name).is_file() and src.resolve() != out.resolve():
                shutil.copyfile(src / name, out / name)
    loaded = SparseAutoencoder.load(out)
    if expected_fp is not None and loaded.fingerprint() != expected_fp:
        raise SAEFormatError(f"{out}: the saved SAE does not load back identically; not uploaded")
    labels = _check_labels(out / LABELS_NAME)
    if loaded.cfg.avgdl is None:
        logger.warning(
            "this SAE has no calibrated avgdl: users must run calibrate_avgdl before encoding "
            "documents (latentlex train does it for you)"
        )
    (out / CARD_NAME).write_text(model_card(loaded, repo_id, has_labels=labels), encoding="utf-8")
    return out


def _check_labels(path: Path) -> bool:
    if not path.is_file():
        return False
    data = read_json_capped(path, max_bytes=MAX_LABELS_BYTES, what="labels file")
    if not isinstance(data, dict | list):
        raise SAEFormatError(f"{path}: must hold a JSON object or list")
    return True


def push_to_hub(
    sae_or_folder: SparseAutoencoder | str | os.PathLike[str],
    repo_id: str,
    private: bool = True,
    revision: str | None = None,
    commit_message: str = "Upload latentlex SAE",
    token: str | bool | None = None,
) -> str:
    """Upload an SAE (``cfg.json``, ``sae.safetensors``, ``labels.json``, a model card).

    Everything is validated locally first (see :func:`stage_for_upload`); the repository is
    created when missing (private by default; an existing repository keeps its visibility), and
    the branch ``revision`` too.

    Args:
        sae_or_folder: a :class:`~latentlex.sae.SparseAutoencoder` or a saved SAE folder.
        repo_id: ``"namespace/name"``.
        private: create the repository private.
        revision: the branch to commit to (default: main).
        commit_message: the commit's title.
        token: a Hub token with write access (default: huggingface_hub's login / ``HF_TOKEN``).

    Returns:
        The URL of the commit (it ends with the commit sha).

    Raises:
        SAEFormatError: the SAE does not validate (nothing is uploaded).
        HubError: offline, or the Hub refused the upload.

    Example:
        >>> push_to_hub("my-sae", "me/minilm-latent-terms")  # doctest: +SKIP
        'https://huggingface.co/me/minilm-latent-terms/commit/...'
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    check_repo_id(repo_id)
    revision = check_revision(revision)
    if not commit_message:
        raise ConfigError("commit_message must not be empty")
    if offline():
        raise HubError(
            "HF_HUB_OFFLINE is set: nothing can be pushed. stage_for_upload() (latentlex push "
            "--dry-run) validates and writes the model card locally."
        )
    with tempfile.TemporaryDirectory(prefix="latentlex-push-") as tmp:
        staged = stage_for_upload(sae_or_folder, repo_id, tmp)
        api = HfApi(
            endpoint=endpoint(), library_name="latentlex", library_version=library_version()
        )
        hub_call(
            f"create {repo_id}",
            lambda: api.create_repo(repo_id, private=private, exist_ok=True, token=token),
        )
        if revision not in (None, "main"):
            hub_call(
                f"create branch {revision}",
                lambda: api.create_branch(repo_id, branch=revision, exist_ok=True, token=token),
            )
        ops = [
            CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(staged / name))
            for name in UPLOAD_FILES
            if (staged / name).is_file()
        ]
        info = hub_call(
            f"commit to {repo_id}",
            lambda: api.create_commit(
                repo_id, ops, commit_message=commit_message, revision=revision, token=token
            ),
        )
    logger.info("pushed %d files to %s (commit %s)", len(ops), repo_id, info.oid[:12])
    return str(info.commit_url)


# ----------------------------------------------------------------------------- command line


def _cfg_pull(p: argparse.ArgumentParser) -> None:
    p.add_argument("repo", help="Hub id 'namespace/name' (or a local folder)")
    p.add_argument("--revision", default=None, help="branch, tag or commit sha")
    p.add_argument("--subfolder", default=None, help="folder of the SAE inside the repository")
    p.add_argument("--out", default=None, help="also save it here, in latentlex's own format")
    p.add_argument("--backbone", default=None, help="backbone name, if the config lacks it")
    p.add_argument("--mode", choices=["token", "pooled"], default=None)
    p.add_argument("--format", dest="sae_format", default=None, help="force a source format")


def _run_pull(args: argparse.Namespace) -> int:
    sae, folder = _load(
        args.repo,
        revision=args.revision,
        subfolder=args.subfolder,
        token=None,
        local_files_only=False,
        cache_dir=None,
        device=None,
        backbone=args.backbone,
        sae_format=args.sae_format,
        mode=args.mode,
    )
    cfg = sae.cfg
    where = folder
    if args.out:
        out = Path(args.out)
        sae.save(out)
        if (folder / LABELS_NAME).is_file():
            shutil.copyfile(folder / LABELS_NAME, out / LABELS_NAME)
        where = out
    print(
        f"{args.repo}: {cfg.architecture} SAE, {cfg.mode} mode, width {cfg.width}, k {cfg.k}, "
        f"backbone {cfg.backbone}; at {where}"
    )
    if cfg.avgdl is None:
        print("note: no calibrated avgdl: run calibrate_avgdl on your documents before indexing")
    return 0


def _cfg_push(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="a saved SAE folder (cfg.json + sae.safetensors)")
    p.add_argument("repo", help="Hub id 'namespace/name'")
    p.add_argument("--public", action="store_true", help="create the repository public")
    p.add_argument("--revision", default=None, help="branch to commit to")
    p.add_argument("--message", default="Upload latentlex SAE", help="commit message")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate and write README.md into DIR; upload nothing",
    )


def _run_push(args: argparse.Namespace) -> int:
    if args.dry_run:
        staged = stage_for_upload(args.dir, args.repo, args.dir)
        print(f"validated {args.dir}; model card written to {staged / CARD_NAME}; nothing uploaded")
        return 0
    url = push_to_hub(
        args.dir,
        args.repo,
        private=not args.public,
        revision=args.revision,
        commit_message=args.message,
    )
    print(url)
    return 0


CLI_COMMANDS: Commands = {
    "pull": (_cfg_pull, _run_pull, "download (and convert) an SAE from the Hugging Face Hub"),
    "push": (_cfg_push, _run_push, "validate an SAE folder and upload it with a model card"),
}
"""``latentlex pull`` / ``latentlex push``, in :mod:`latentlex.cli`'s registry shape."""


def add_cli(subparsers: Any) -> dict[str, Handler]:
    """Add ``pull`` and ``push`` to an argparse sub-parser set; returns their handlers.

    Each parser also gets ``handler`` as a default, so ``args.handler(args)`` runs it.
    """
    return add_commands(subparsers, CLI_COMMANDS)
