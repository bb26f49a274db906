"""Fetching SAE files from the Hugging Face Hub: download, cache, verify (no SAE model here).

- only the files an SAE needs are fetched (``cfg.json`` first, then the weights the detected
  format names, and ``labels.json`` when present);
- each downloaded file is checked against the Hub's metadata (size, and sha256 for LFS files or
  the git blob id for small ones); a corrupt file is removed from the cache and reported, never
  loaded; files served from the cache are checked against the name of their blob;
- ``revision`` pins a branch, tag or commit; a pinned commit already in the cache needs no
  network; ``HF_HUB_OFFLINE=1`` or ``local_files_only=True`` use the cache only, and an
  unreachable Hub falls back to it;
- sizes in ``cfg.json`` are validated before anything large is downloaded; subfolders and
  revisions cannot escape their folder; tokens are passed to ``huggingface_hub``, never logged.

:func:`hub_folder` returns the local folder; :mod:`latentlex.hub` turns it into an SAE.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from .converters import (
    check_dims,
    detect_format,
    format_dims,
    max_weights_bytes,
    missing_files_error,
    read_json,
    weights_name,
)
from .errors import ConfigError, HubError, LatentLexError, SAEFormatError
from .labelfile import LABELS_NAME

__all__ = [
    "CONFIG_NAME",
    "HubUnreachable",
    "check_repo_id",
    "check_revision",
    "clean_relpath",
    "endpoint",
    "hub_call",
    "hub_folder",
    "inside",
    "library_version",
    "offline",
]

logger = logging.getLogger(__name__)

CONFIG_NAME = "cfg.json"
MAX_CONFIG_BYTES = 1 << 20

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class HubUnreachable(HubError):
    """The Hub could not be reached (connection, timeout, 5xx, offline switch)."""


# ----------------------------------------------------------------------------- validation


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def offline() -> bool:
    """``HF_HUB_OFFLINE`` (read now, not at import time) or huggingface_hub's own flag."""
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def endpoint() -> str:
    """``HF_ENDPOINT`` (read now) or huggingface_hub's default."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def check_repo_id(repo_id: str) -> str:
    # the Hub's own rules too: no '--' or '..', no part starting or ending with '.' or '-'
    if (
        not isinstance(repo_id, str)
        or not REPO_ID.match(repo_id)
        or ".." in repo_id
        or "--" in repo_id
        or any(part[:1] in ".-" or part[-1:] in ".-" for part in repo_id.split("/"))
    ):
        raise ConfigError(
            f"{repo_id!r} is neither an existing local folder nor a Hub repository id "
            "('namespace/name')"
        )
    return repo_id


def clean_relpath(value: str | None, what: str) -> str | None:
    """A relative POSIX path that stays inside its folder, or None."""
    if value is None or value in ("", "."):
        return None
    if not isinstance(value, str) or "\\" in value or "\x00" in value:
        raise ConfigError(f"{what} must be a relative path with '/' separators, got {value!r}")
    path = PurePosixPath(value)
    if path.is_absolute() or any(part in ("..", "") for part in value.strip("/").split("/")):
        raise ConfigError(f"{what} {value!r} must stay inside the repository (no '..', no '/...')")
    return path.as_posix().strip("/")


def check_revision(revision: str | None) -> str | None:
    if revision is None:
        return None
    if not isinstance(revision, str) or not revision or ".." in revision or revision[0] == "/":
        raise ConfigError(f"invalid revision {revision!r}")
    return revision


def inside(root: Path, sub: str | None) -> Path:
    if sub is None:
        return root
    try:
        folder = (root / sub).resolve()
    except (RuntimeError, OSError) as e:  # a symlink loop, a name too long
        raise ConfigError(f"subfolder {sub!r} cannot be resolved ({e})") from None
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


# ----------------------------------------------------------------------------- fetching


def hub_folder(
    repo_id: str,
    revision: str | None,
    sub: str | None,
    token: str | bool | None,
    local_files_only: bool,
    cache_dir: str | None,
    sae_format: str | None,
) -> Path:
    """The local snapshot folder of an SAE on the Hub, downloading (and verifying) what is missing.

    Args:
        repo_id: ``"namespace/name"`` (checked with :func:`check_repo_id`).
        revision: branch, tag or commit sha (checked with :func:`check_revision`), or None.
        sub: the SAE's folder inside the repository (checked with :func:`clean_relpath`).
        token: a Hub token, passed to ``huggingface_hub`` only.
        local_files_only: use the cache only.
        cache_dir: the Hub cache folder (default: huggingface_hub's).
        sae_format: a forced format name (default: detected from ``cfg.json``).

    Raises:
        HubError: the Hub refused the request, or it is unreachable and nothing is cached.
        SAEFormatError: a corrupt download or cached file, pickled weights only, absurd sizes.
    """
    cache_only = local_files_only or offline()
    if cache_only or (revision is not None and _COMMIT.match(revision)):
        try:
            return _cached_folder(repo_id, revision, sub, cache_dir, sae_format)
        except HubError:
            if cache_only:
                raise
    try:
        return _download(repo_id, revision, sub, token, cache_dir, sae_format)
    except HubUnreachable as err:
        try:
            folder = _cached_folder(repo_id, revision, sub, cache_dir, sae_format)
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
    folder = inside(Path(snapshot), sub)
    prefix = f"{repo_id}/{sub}/" if sub else f"{repo_id}/"
    if not (folder / CONFIG_NAME).is_file():
        raise HubError(f"{prefix}{CONFIG_NAME} is not in the local Hub cache")
    _verify_blob_name(folder / CONFIG_NAME, prefix + CONFIG_NAME)
    files = {p.name for p in folder.iterdir()}
    name = sub.rsplit("/", 1)[-1] if sub else repo_id.split("/")[-1]
    fmt = sae_format or detect_format(read_json(folder / CONFIG_NAME), files, name)
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


def hub_call(what: str, fn: Callable[[], Any]) -> Any:
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
            raise HubUnreachable(f"{what}: the Hub answered HTTP {status}") from None
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise HubError(f"{what}: the Hub answered HTTP {status}: {first}") from None
    except (OfflineModeIsEnabled, LocalEntryNotFoundError) as e:
        raise HubUnreachable(f"{what}: the Hub is unreachable ({type(e).__name__})") from None
    except transport as e:
        raise HubUnreachable(f"{what}: the Hub is unreachable ({type(e).__name__}: {e})") from None


def _download(
    repo_id: str,
    revision: str | None,
    sub: str | None,
    token: str | bool | None,
    cache_dir: str | None,
    sae_format: str | None,
) -> Path:
    """Resolve ``revision`` to a commit, fetch and verify the SAE's files, return their folder."""
    from huggingface_hub import HfApi

    url = endpoint()
    api = HfApi(endpoint=url, library_name="latentlex", library_version=library_version())
    where = f"{repo_id}{'@' + revision if revision else ''}"
    info = hub_call(
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
        path = hub_call(
            f"{where}: {prefix}{name}",
            lambda: _hf_download(repo_id, prefix + name, commit, cache_dir, token, url),
        )
        _verify_download(Path(path), entry, f"{repo_id}/{prefix}{name}@{commit[:12]}")
        return Path(path)

    size = here[CONFIG_NAME].size
    if size is not None and size > MAX_CONFIG_BYTES:
        raise SAEFormatError(f"{repo_id}/{prefix}{CONFIG_NAME}: {size} bytes is too large")
    if not any(name.endswith(".safetensors") for name in here):
        raise _missing_remote(repo_id, sub, siblings, here, "safetensors weights")
    cfg_path = fetch(CONFIG_NAME)
    cfg = read_json(cfg_path)
    name = sub.rsplit("/", 1)[-1] if sub else repo_id.split("/")[-1]
    fmt = sae_format or detect_format(cfg, set(here), name)
    try:
        d_in, width = format_dims(fmt, cfg)
    except ConfigError as e:
        raise SAEFormatError(f"{repo_id}/{prefix}{CONFIG_NAME}: {e}") from None
    check_dims(d_in, width)
    wname = weights_name(fmt)
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
        library_version=library_version(),
    )


def _missing_remote(
    repo_id: str, sub: str | None, siblings: dict[str, Any], here: dict[str, Any], wanted: str
) -> LatentLexError:
    where = f"{repo_id}/{sub}" if sub else repo_id
    prefix = f"{sub}/" if sub else ""
    subs = sorted(
        {
            n[len(prefix) : -len(CONFIG_NAME) - 1]
            for n in siblings
            if n.startswith(prefix) and n.endswith("/" + CONFIG_NAME)
        }
    )
    return missing_files_error(where, set(here), subs, wanted, remote=True)


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
    ref = inside(storage / "refs", revision)
    try:
        if ref.is_file() and ref.read_text().strip() == commit:
            return
        ref.parent.mkdir(parents=True, exist_ok=True)
        tmp = ref.with_name(ref.name + ".tmp")
        tmp.write_text(commit)
        os.replace(tmp, ref)
    except OSError as e:  # a read-only cache still serves this session
        logger.warning("could not record %s@%s in the Hub cache: %s", repo_id, revision, e)


def library_version() -> str:
    from . import __version__

    return __version__
