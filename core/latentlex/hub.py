"""Share SAEs through the Hugging Face Hub: :func:`from_pretrained`, :func:`push_to_hub`.

Loading looks for a local folder first, then the Hub through ``huggingface_hub``:

- only the files the SAE needs are fetched (``cfg.json`` first, then the weights the detected
  format names, and ``labels.json`` when present);
- each downloaded file is checked against the Hub's metadata (size, and sha256 for LFS files or
  the git blob id for small ones); a corrupt file is removed from the cache and reported, never
  loaded; files served from the cache are checked against the name of their blob;
- ``revision`` pins a branch, tag or commit; a pinned commit already in the cache needs no
  network; ``HF_HUB_OFFLINE=1`` or ``local_files_only=True`` use the cache only, and an
  unreachable Hub falls back to it;
- safetensors and JSON only: a repository offering only pickled weights is refused; sizes in
  ``cfg.json`` are validated before anything large is downloaded or allocated; subfolders and
  revisions cannot escape their folder; tokens are passed to ``huggingface_hub``, never logged.

Foreign formats (EleutherAI sparsify, enjalot's latentsae, SAELens TopK) go through
:mod:`latentlex.converters`.

Example:
    >>> from latentlex.hub import from_pretrained
    >>> sae = from_pretrained(  # doctest: +SKIP
    ...     "enjalot/sae-all-MiniLM-L6-v2-FineWeb-RedPajama-Pile-150M", subfolder="64_8"
    ... )
    >>> sae.cfg.mode  # doctest: +SKIP
    'pooled'
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, HubError, LatentLexError, SAEFormatError

if TYPE_CHECKING:
    import torch

    from .backbone import Backbone
    from .sae import SparseAutoencoder

__all__ = [
    "CLI_COMMANDS",
    "KNOWN_REPOS",
    "UPLOAD_FILES",
    "RepoHint",
    "add_cli",
    "from_pretrained",
    "model_card",
    "push_to_hub",
    "stage_for_upload",
]

logger = logging.getLogger(__name__)

CONFIG_NAME = "cfg.json"
LABELS_NAME = "labels.json"
CARD_NAME = "README.md"
UPLOAD_FILES = (CONFIG_NAME, "sae.safetensors", LABELS_NAME, CARD_NAME)
"""What :func:`push_to_hub` uploads (``labels.json`` only when present)."""
PICKLE_SUFFIXES = (
    ".pt",
    ".pth",
    ".bin",
    ".pkl",
    ".pickle",
    ".ckpt",
)  # = converters' (no torch here)
MAX_LABELS_BYTES = 64 << 20

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class RepoHint:
    """What a public repository's files do not say: its format and backbone."""

    format: str
    backbone: str


KNOWN_REPOS: dict[str, RepoHint] = {
    "enjalot/sae-all-MiniLM-L6-v2-FineWeb-RedPajama-Pile-150M": RepoHint(
        "latentsae", "sentence-transformers/all-MiniLM-L6-v2"
    ),
    "enjalot/sae-nomic-text-v1.5-FineWeb-edu-100BT": RepoHint(
        "latentsae", "nomic-ai/nomic-embed-text-v1.5"
    ),
}
"""Public SAE repositories whose configs name neither format nor backbone."""


class _Unreachable(HubError):
    """The Hub could not be reached (connection, timeout, 5xx, offline switch)."""


# ----------------------------------------------------------------------------- validation


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _offline() -> bool:
    """``HF_HUB_OFFLINE`` (read now, not at import time) or huggingface_hub's own flag."""
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _endpoint() -> str:
    """``HF_ENDPOINT`` (read now) or huggingface_hub's default."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _check_repo_id(repo_id: str) -> str:
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id) or ".." in repo_id:
        raise ConfigError(
            f"{repo_id!r} is neither an existing local folder nor a Hub repository id "
            "('namespace/name')"
        )
    return repo_id


def _clean_relpath(value: str | None, what: str) -> str | None:
    """A relative POSIX path that stays inside its folder, or None."""
    if value is None or value in ("", "."):
        return None
    if not isinstance(value, str) or "\\" in value or "\x00" in value:
        raise ConfigError(f"{what} must be a relative path with '/' separators, got {value!r}")
    path = PurePosixPath(value)
    if path.is_absolute() or any(part in ("..", "") for part in value.strip("/").split("/")):
        raise ConfigError(f"{what} {value!r} must stay inside the repository (no '..', no '/...')")
    return path.as_posix().strip("/")


def _check_revision(revision: str | None) -> str | None:
    if revision is None:
        return None
    if not isinstance(revision, str) or not revision or ".." in revision or revision[0] == "/":
        raise ConfigError(f"invalid revision {revision!r}")
    return revision


def _inside(root: Path, sub: str | None) -> Path:
    if sub is None:
        return root
    folder = (root / sub).resolve()
    if not folder.is_relative_to(root.resolve()):
        raise ConfigError(f"subfolder {sub!r} escapes {root}")
    return folder


def _git_blob_sha1(path: Path) -> str:
    h = hashlib.sha1(usedforsecurity=False)
    h.update(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
            when a foreign config does not name it (its dimension is checked).
        sae_format: force a format: ``"latentlex"``, ``"sparsify"``, ``"latentsae"``,
            ``"saelens"`` (default: detected).
        mode: ``"token"`` or ``"pooled"`` for a foreign SAE (default: the format's; latentsae
            SAEs are pooled).

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
) -> tuple[SparseAutoencoder, Path]:
    """:func:`from_pretrained`, also returning the folder the SAE was read from."""
    from .converters import load_folder

    sub = _clean_relpath(subfolder, "subfolder")
    revision = _check_revision(revision)
    text = os.fspath(repo_id_or_path)
    local = Path(text).expanduser()
    fmt_hint = None
    if local.is_dir():
        folder = _inside(local, sub)
    elif text.startswith((".", "/", "~")) or "\\" in text or text.count("/") != 1:
        raise SAEFormatError(f"{text}: no such SAE folder (and not a Hub id 'namespace/name')")
    else:
        repo_id = _check_repo_id(text)
        hint = KNOWN_REPOS.get(repo_id)
        if hint is not None:
            fmt_hint = hint.format
            backbone = hint.backbone if backbone is None else backbone
        cache = os.fspath(cache_dir) if cache_dir is not None else None
        folder = _hub_folder(
            repo_id, revision, sub, token, local_files_only, cache, sae_format, hint
        )
    sae = load_folder(
        folder,
        sae_format=sae_format,
        format_hint=fmt_hint,
        backbone=backbone,
        mode=mode,
        device=device,
    )
    from .labels import read_label_map

    sae.labels = read_label_map(folder)
    return sae, folder


def _hub_folder(
    repo_id: str,
    revision: str | None,
    sub: str | None,
    token: str | bool | None,
    local_files_only: bool,
    cache_dir: str | None,
    sae_format: str | None,
    hint: RepoHint | None,
) -> Path:
    """The local snapshot folder of the SAE, downloading (and verifying) what is missing."""
    offline = local_files_only or _offline()
    fmt_hint = hint.format if hint else None
    if offline or (revision is not None and _COMMIT.match(revision)):
        try:
            return _cached_folder(repo_id, revision, sub, cache_dir, sae_format, fmt_hint)
        except HubError:
            if offline:
                raise
    try:
        return _download(repo_id, revision, sub, token, cache_dir, sae_format, hint)
    except _Unreachable as err:
        try:
            folder = _cached_folder(repo_id, revision, sub, cache_dir, sae_format, fmt_hint)
        except HubError:
            raise err from None
        logger.warning("the Hub is unreachable; using the cached copy of %s", repo_id)
        return folder


def _cached_folder(
    repo_id: str,
    revision: str | None,
    sub: str | None,
    cache_dir: str | None,
    sae_format: str | None = None,
    format_hint: str | None = None,
) -> Path:
    """The cached snapshot folder for ``revision``, every needed file checked against its blob."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=True,
            allow_patterns=[f"{sub}/*" if sub else "*"],
        )
    except (LocalEntryNotFoundError, FileNotFoundError, OSError) as e:
        raise HubError(
            f"{repo_id}{'@' + revision if revision else ''} is not in the local Hub cache and "
            f"downloads are off (HF_HUB_OFFLINE=1 or local_files_only=True) or failed: run once "
            f"with internet access, or `latentlex pull {repo_id}` ({type(e).__name__})"
        ) from None
    from .converters import detect_format, read_json, weights_name

    folder = _inside(Path(snapshot), sub)
    prefix = f"{repo_id}/{sub}/" if sub else f"{repo_id}/"
    if not (folder / CONFIG_NAME).is_file():
        raise HubError(f"{prefix}{CONFIG_NAME} is not in the local Hub cache")
    _verify_blob_name(folder / CONFIG_NAME, prefix + CONFIG_NAME)
    files = {p.name for p in folder.iterdir()}
    fmt = sae_format or detect_format(read_json(folder / CONFIG_NAME), files, format_hint)
    wname = weights_name(fmt)
    if not (folder / wname).is_file():
        raise HubError(f"{prefix}{wname} is not in the local Hub cache")
    for name in (wname, LABELS_NAME):
        if (folder / name).is_file():
            _verify_blob_name(folder / name, prefix + name)
    return folder


def _verify_blob_name(path: Path, label: str) -> None:
    """A cached file's blob is named by its etag: sha256 (LFS) or git blob sha1 (small files)."""
    blob = Path(os.path.realpath(path)).name
    if _HEX64.match(blob):
        actual, kind = _sha256(path), "sha256"
    elif _COMMIT.match(blob):
        actual, kind = _git_blob_sha1(path), "git blob id"
    else:
        return  # not a hashed blob (copied cache on a filesystem without symlinks)
    if actual != blob:
        raise SAEFormatError(
            f"{label}: the cached file {path} is corrupt ({kind} {actual[:12]}… but the Hub "
            f"said {blob[:12]}…); it was not loaded. Delete it and download again."
        )


def _hub_call(what: str, fn: Callable[[], Any]) -> Any:
    """Run a huggingface_hub call, turning its errors into :class:`HubError` (no token in text)."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    transport: tuple[type[BaseException], ...] = (OSError,)
    try:
        import httpx2

        transport += (httpx2.TransportError,)
    except ImportError:  # pragma: no cover - older huggingface_hub
        pass
    try:
        return fn()
    except RevisionNotFoundError:
        raise HubError(f"{what}: no such revision") from None
    except GatedRepoError:
        raise HubError(
            f"{what}: gated repository: accept its terms on the Hub and pass token="
        ) from None
    except RepositoryNotFoundError:
        raise HubError(
            f"{what}: repository not found (a private one needs token= or `hf auth login`)"
        ) from None
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status is not None and status >= 500:
            raise _Unreachable(f"{what}: the Hub answered HTTP {status}") from None
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise HubError(f"{what}: the Hub answered HTTP {status}: {first}") from None
    except (OfflineModeIsEnabled, LocalEntryNotFoundError) as e:
        raise _Unreachable(f"{what}: the Hub is unreachable ({type(e).__name__})") from None
    except transport as e:
        raise _Unreachable(f"{what}: the Hub is unreachable ({type(e).__name__}: {e})") from None


def _download(
    repo_id: str,
    revision: str | None,
    sub: str | None,
    token: str | bool | None,
    cache_dir: str | None,
    sae_format: str | None,
    hint: RepoHint | None,
) -> Path:
    """Resolve ``revision`` to a commit, fetch and verify the SAE's files, return their folder."""
    from huggingface_hub import HfApi

    from .converters import check_dims, detect_format, format_dims, max_weights_bytes, read_json
    from .converters import weights_name as weights_for

    endpoint = _endpoint()
    api = HfApi(endpoint=endpoint, library_name="latentlex", library_version=_version())
    where = f"{repo_id}{'@' + revision if revision else ''}"
    info = _hub_call(
        where, lambda: api.model_info(repo_id, revision=revision, files_metadata=True, token=token)
    )
    commit = info.sha
    if not isinstance(commit, str) or not _COMMIT.match(commit):
        raise HubError(f"{where}: the Hub gave no commit sha for this revision")
    prefix = f"{sub}/" if sub else ""
    siblings = {s.rfilename: s for s in (info.siblings or [])}
    here = {
        name[len(prefix) :]: s
        for name, s in siblings.items()
        if name.startswith(prefix) and "/" not in name[len(prefix) :]
    }
    if CONFIG_NAME not in here:
        raise _missing_remote(repo_id, sub, siblings, here, CONFIG_NAME)

    def fetch(name: str) -> Path:
        entry = here[name]
        path = _hub_call(
            f"{where}: {prefix}{name}",
            lambda: _hf_download(repo_id, prefix + name, commit, cache_dir, token, endpoint),
        )
        _verify_download(Path(path), entry, f"{repo_id}/{prefix}{name}@{commit[:12]}")
        return Path(path)

    size = here[CONFIG_NAME].size
    if size is not None and size > (1 << 20):
        raise SAEFormatError(f"{repo_id}/{prefix}{CONFIG_NAME}: {size} bytes is too large")
    if not any(name.endswith(".safetensors") for name in here):
        raise _missing_remote(repo_id, sub, siblings, here, "safetensors weights")
    cfg_path = fetch(CONFIG_NAME)
    cfg = read_json(cfg_path)
    fmt = sae_format or detect_format(cfg, set(here), hint.format if hint else None)
    try:
        d_in, width = format_dims(fmt, cfg)
    except ConfigError as e:
        raise SAEFormatError(f"{repo_id}/{prefix}{CONFIG_NAME}: {e}") from None
    check_dims(d_in, width)
    wname = weights_for(fmt)
    if wname not in here:
        raise _missing_remote(repo_id, sub, siblings, here, wname)
    remote_size = here[wname].size
    if remote_size is not None and remote_size > max_weights_bytes(d_in, width):
        raise SAEFormatError(
            f"{repo_id}/{prefix}{wname}: {remote_size} bytes is more than cfg.json "
            f"(d_in={d_in}, width={width}) can explain; not downloaded"
        )
    fetch(wname)
    if LABELS_NAME in here:
        fetch(LABELS_NAME)
    if revision is None or not _COMMIT.match(revision):
        _write_ref(cache_dir, repo_id, revision or "main", commit)
    logger.info("%s: %s SAE at commit %s", repo_id, fmt, commit[:12])
    return cfg_path.parent


def _hf_download(
    repo_id: str, filename: str, commit: str, cache_dir: str | None, token: Any, endpoint: str
) -> str:
    from huggingface_hub import hf_hub_download

    return hf_hub_download(
        repo_id,
        filename,
        revision=commit,
        cache_dir=cache_dir,
        token=token,
        endpoint=endpoint,
        library_name="latentlex",
        library_version=_version(),
    )


def _missing_remote(
    repo_id: str, sub: str | None, siblings: dict[str, Any], here: dict[str, Any], wanted: str
) -> LatentLexError:
    where = f"{repo_id}/{sub}" if sub else repo_id
    pickled = sorted(n for n in here if n.endswith(PICKLE_SUFFIXES))
    if pickled:
        return SAEFormatError(
            f"{where} offers only pickled weights ({', '.join(pickled[:5])}) for this SAE; "
            "latentlex loads safetensors + JSON only, because unpickling a file can run "
            "arbitrary code. Ask the author for a safetensors export."
        )
    prefix = f"{sub}/" if sub else ""
    subs = sorted(
        {
            n[len(prefix) : -len(CONFIG_NAME) - 1]
            for n in siblings
            if n.startswith(prefix) and n.endswith("/" + CONFIG_NAME)
        }
    )
    if subs and wanted == CONFIG_NAME:
        return SAEFormatError(
            f"{where} holds several SAEs; pass subfolder= one of: {', '.join(subs[:30])}"
        )
    return SAEFormatError(f"{where}: no {wanted} in this repository folder")


def _verify_download(path: Path, entry: Any, label: str) -> None:
    """Check a downloaded file against the Hub's metadata; remove it from the cache if corrupt."""
    lfs = getattr(entry, "lfs", None)
    expected_size = lfs.size if lfs is not None else entry.size
    problem = None
    actual_size = path.stat().st_size
    if expected_size is not None and actual_size != expected_size:
        problem = f"{actual_size} bytes, the Hub lists {expected_size}"
    elif lfs is not None and lfs.sha256:
        got = _sha256(path)
        if got != lfs.sha256:
            problem = f"sha256 {got[:12]}…, the Hub lists {lfs.sha256[:12]}…"
    elif getattr(entry, "blob_id", None):
        got = _git_blob_sha1(path)
        if got != entry.blob_id:
            problem = f"git blob id {got[:12]}…, the Hub lists {entry.blob_id[:12]}…"
    else:
        logger.warning("%s: the Hub gave no checksum; only its size was checked", label)
    if problem is None:
        return
    blob = Path(os.path.realpath(path))
    for p in (path, blob):
        with contextlib.suppress(OSError):
            p.unlink()
    raise SAEFormatError(
        f"{label}: the downloaded file is corrupt ({problem}); it was not loaded and was "
        "removed from the cache. Try again; if it persists, the file on the Hub is damaged."
    )


def _write_ref(cache_dir: str | None, repo_id: str, revision: str, commit: str) -> None:
    """Record ``revision -> commit`` in the cache (huggingface_hub's layout) for offline use."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    storage = Path(cache_dir or constants.HF_HUB_CACHE) / repo_folder_name(
        repo_id=repo_id, repo_type="model"
    )
    ref = _inside(storage / "refs", revision)
    try:
        if ref.is_file() and ref.read_text().strip() == commit:
            return
        ref.parent.mkdir(parents=True, exist_ok=True)
        tmp = ref.with_name(ref.name + ".tmp")
        tmp.write_text(commit)
        os.replace(tmp, ref)
    except OSError as e:  # a read-only cache still serves this session
        logger.warning("could not record %s@%s in the Hub cache: %s", repo_id, revision, e)


def _version() -> str:
    from . import __version__

    return __version__


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
    from .sae import SAE_WEIGHTS_NAME, SparseAutoencoder

    _check_repo_id(repo_id)
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
    if path.stat().st_size > MAX_LABELS_BYTES:
        raise SAEFormatError(f"{path}: larger than {MAX_LABELS_BYTES} bytes")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SAEFormatError(f"{path}: not valid JSON ({e})") from None
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

    _check_repo_id(repo_id)
    revision = _check_revision(revision)
    if not commit_message:
        raise ConfigError("commit_message must not be empty")
    if _offline():
        raise HubError(
            "HF_HUB_OFFLINE is set: nothing can be pushed. stage_for_upload() (latentlex push "
            "--dry-run) validates and writes the model card locally."
        )
    with tempfile.TemporaryDirectory(prefix="latentlex-push-") as tmp:
        staged = stage_for_upload(sae_or_folder, repo_id, tmp)
        api = HfApi(endpoint=_endpoint(), library_name="latentlex", library_version=_version())
        _hub_call(
            f"create {repo_id}",
            lambda: api.create_repo(repo_id, private=private, exist_ok=True, token=token),
        )
        if revision not in (None, "main"):
            _hub_call(
                f"create branch {revision}",
                lambda: api.create_branch(repo_id, branch=revision, exist_ok=True, token=token),
            )
        ops = [
            CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(staged / name))
            for name in UPLOAD_FILES
            if (staged / name).is_file()
        ]
        info = _hub_call(
            f"commit to {repo_id}",
            lambda: api.create_commit(
                repo_id, ops, commit_message=commit_message, revision=revision, token=token
            ),
        )
    logger.info("pushed %d files to %s (commit %s)", len(ops), repo_id, info.oid[:12])
    return str(info.commit_url)


# ----------------------------------------------------------------------------- model card

_TRAIN_METRICS = {
    "fvu": ("FVU (held-out)", "{:.3f}"),
    "l0": ("L0 (active latents per row)", "{:.1f}"),
    "dead_pct": ("dead latents", "{:.2f} %"),
    "train_vectors": ("training vectors", "{:,.0f}"),
    "train_docs": ("training documents", "{:,.0f}"),
    "seconds_total": ("fit time (s)", "{:,.0f}"),
}


_EVAL_KEY = re.compile(r"@|ndcg|recall|mrr|map|precision|accuracy|eval", re.IGNORECASE)
"""Metrics shown under "Evaluation" (the others are training details)."""


def _num(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() and abs(value) < 1e15 else f"{value:.4g}"


def _hub_model_id(name: str | None) -> str | None:
    if name is None:
        return None
    from .backbone import DEFAULT_MODEL

    if name == DEFAULT_MODEL:
        return "sentence-transformers/all-MiniLM-L6-v2"
    return name if _REPO_ID.match(name) and not Path(name).exists() else None


def model_card(sae: SparseAutoencoder, repo_id: str, *, has_labels: bool = False) -> str:
    """The ``README.md`` model card of an SAE: metadata, figures and a usage snippet.

    Example:
        >>> print(model_card(sae, "me/minilm-latent-terms"))  # doctest: +SKIP
    """
    cfg = sae.cfg
    version = _version()
    base = _hub_model_id(cfg.backbone)
    meta = ["---", "library_name: latentlex", "tags:"]
    tags = ("latentlex", "sparse-autoencoder", "sae", "retrieval", "latent-terms")
    meta += [f"- {t}" for t in tags]
    if base:
        meta.append(f"base_model: {base}")
    meta.append("---")
    mode_text = (
        "token: one code per token state, summed per text (Latent Terms)"
        if cfg.mode == "token"
        else "pooled: one code per pooled text embedding (CL-SR)"
    )
    arch = f"{cfg.architecture}, k = {cfg.k}"
    if cfg.architecture == "batchtopk":
        arch += f", threshold {cfg.threshold}, at most {cfg.effective_max_active} active"
    rows = [("backbone", f"`{cfg.backbone}` (dim {cfg.backbone_dim or cfg.d_in})")]
    if cfg.backbone_fingerprint:
        rows.append(("backbone fingerprint", f"`{cfg.backbone_fingerprint}`"))
    rows += [
        ("mode", mode_text),
        ("architecture", arch),
        ("width", f"{cfg.width:,} latents"),
    ]
    m = cfg.metrics
    rows += [(label, f.format(m[key])) for key, (label, f) in _TRAIN_METRICS.items() if key in m]
    bm25 = f"k1 = {cfg.bm25_k1}, b = {cfg.bm25_b}"
    if cfg.query_k2 is not None:
        bm25 += f", query k2 = {cfg.query_k2}"
    rows += [
        ("BM25", bm25),
        ("avgdl", "not calibrated" if cfg.avgdl is None else f"{cfg.avgdl:.2f}"),
        ("SAE fingerprint", f"`{sae.fingerprint()}`"),
        ("latentlex", version),
    ]
    table = ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    rest = sorted(k for k in m if k not in _TRAIN_METRICS)
    evaluation: list[str] = []
    scores = [k for k in rest if _EVAL_KEY.search(k)]
    if scores:
        evaluation = ["## Evaluation", "", "| metric | value |", "|---|---|"]
        evaluation += [f"| {k} | {_num(m[k])} |" for k in scores]
        evaluation.append("")
    details = [k for k in rest if k not in scores]
    if details:
        evaluation += ["## Training details", "", "| | |", "|---|---|"]
        evaluation += [f"| {k} | {_num(m[k])} |" for k in details]
        evaluation.append("")
    files = ["- `cfg.json`: the configuration (sizes, mode, backbone, BM25 parameters, metrics)"]
    files.append("- `sae.safetensors`: `W_enc` [width, d], `b_enc`, `W_dec` [width, d], `b_dec`")
    if has_labels:
        files.append("- `labels.json`: human-readable labels of the latents")
    calibrate = (
        ""
        if cfg.avgdl is not None
        else "encoder.calibrate_avgdl(sample_of_your_documents)  # this SAE has no avgdl yet\n"
    )
    name = repo_id.split("/")[-1]
    return "\n".join(
        [
            *meta,
            "",
            f"# {name}",
            "",
            f"A sparse autoencoder that turns `{cfg.backbone}` embeddings into **latent terms** "
            "for hybrid retrieval with [latentlex](https://pypi.org/project/latentlex/): "
            "`z = TopK_k(ReLU(W_enc (x - b_dec) + b_enc))`, `x_hat = W_dec^T z + b_dec`; the "
            "active latent ids, BM25-weighted, are stored as a sparse vector beside the dense "
            "vector in Qdrant.",
            "",
            *table,
            "",
            *evaluation,
            "## Usage",
            "",
            "```bash",
            f'pip install "latentlex=={version}"',
            "```",
            "",
            "```python",
            "from latentlex import LatentTermEncoder",
            "from latentlex.hub import from_pretrained",
            "",
            f'sae = from_pretrained("{repo_id}")',
            "encoder = LatentTermEncoder(sae)",
            calibrate + 'docs = encoder.encode_documents(["Qdrant stores sparse vectors."])',
            'queries = encoder.encode_queries(["where are sparse vectors stored?"])',
            "```",
            "",
            f"From the command line: `latentlex index --corpus corpus.jsonl --sae {repo_id}`.",
            "",
            "## Files",
            "",
            *files,
            "",
        ]
    )


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


Handler = Callable[[argparse.Namespace], int]
CLI_COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Handler, str]] = {
    "pull": (_cfg_pull, _run_pull, "download (and convert) an SAE from the Hugging Face Hub"),
    "push": (_cfg_push, _run_push, "validate an SAE folder and upload it with a model card"),
}
"""``latentlex pull`` / ``latentlex push``, in :mod:`latentlex.cli`'s registry shape."""


def add_cli(subparsers: Any) -> dict[str, Handler]:
    """Add ``pull`` and ``push`` to an argparse sub-parser set; returns their handlers.

    Each parser also gets ``handler`` as a default, so ``args.handler(args)`` runs it.
    """
    handlers: dict[str, Handler] = {}
    for name, (configure, handler, help_) in CLI_COMMANDS.items():
        p = subparsers.add_parser(name, help=help_, description=help_)
        configure(p)
        p.set_defaults(handler=handler)
        handlers[name] = handler
    return handlers
