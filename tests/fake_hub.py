"""A small fake Hugging Face Hub on 127.0.0.1: enough for huggingface_hub 2.x to download/upload.

Implements the calls ``hf_hub_download``, ``HfApi.model_info(files_metadata=True)``,
``snapshot_download``, ``create_repo``, ``create_branch`` and ``create_commit`` make:

- ``GET /api/models/{repo}[/revision/{rev}]`` (``?blobs=True``: sizes, blob ids, LFS sha256)
- ``HEAD|GET /{repo}/resolve/{rev}/{path}`` with ``ETag``, ``X-Repo-Commit``, ``Content-Length``
  and, for LFS files, ``X-Linked-Etag`` / ``X-Linked-Size``
- ``POST /api/repos/create``, ``POST /api/models/{repo}/branch/{name}``, ``POST /api/validate-yaml``
- ``POST /api/models/{repo}/preupload/{rev}`` (``.safetensors`` and files > 10 kB go to LFS)
- ``POST /{repo}.git/info/lfs/objects/batch``, ``PUT /lfs/{oid}``, ``POST /lfs/{oid}/verify``
- ``POST /api/models/{repo}/commit/{rev}`` (ndjson: header, file (base64), lfsFile)

Everything lives in memory; the server runs in a daemon thread and every connection times out
after a few seconds. Xet storage is not implemented: tests must set
``huggingface_hub.constants.HF_HUB_DISABLE_XET = True`` before uploading.

Example:
    >>> with FakeHub(token="hf_x") as hub:  # doctest: +SKIP
    ...     hub.add_repo("me/sae", {"cfg.json": b"{}"})
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

LFS_MIN_SIZE = 10_000


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    oid = hashlib.sha256(data).hexdigest()
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n".encode()
    )


def is_lfs(path: str, data: bytes) -> bool:
    return path.endswith((".safetensors", ".bin", ".pt")) or len(data) > LFS_MIN_SIZE


@dataclass
class Repo:
    private: bool = False
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    corrupt: set[str] = field(default_factory=set)

    def resolve(self, rev: str) -> str | None:
        if rev in self.branches:
            return self.branches[rev]
        return rev if rev in self.commits else None


class FakeHub:
    """An in-memory Hub. ``token``: when set, writes and private repos need ``Bearer <token>``."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        assert self._server is not None, "start() the hub first"
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ content
    def add_repo(self, repo_id: str, files: dict[str, bytes], private: bool = False) -> str:
        """Create a repository whose first commit holds ``files``; returns the commit sha."""
        with self.lock:
            self.repos[repo_id] = Repo(private=private)
        return self.commit(repo_id, files, "initial commit")

    def commit(
        self, repo_id: str, files: dict[str, bytes], message: str, branch: str = "main"
    ) -> str:
        """Add a commit on ``branch`` updating ``files``; returns its sha."""
        with self.lock:
            repo = self.repos[repo_id]
            parent = repo.branches.get(branch)
            tree = dict(repo.commits[parent]) if parent else {}
            tree.update(files)
            h = hashlib.sha1(usedforsecurity=False)
            h.update(f"{parent}:{message}:{len(repo.commits)}".encode())
            for path in sorted(tree):
                h.update(path.encode() + git_blob_sha1(tree[path]).encode())
            sha = h.hexdigest()
            repo.commits[sha] = tree
            repo.branches[branch] = sha
            return sha

    def files(self, repo_id: str, rev: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        sha = repo.resolve(rev)
        assert sha is not None
        return repo.commits[sha]

    def paths_requested(self, method: str = "GET") -> list[str]:
        return [p for m, p, _ in self.requests if m == method]


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"
    timeout = 5

    def log_message(self, format: str, *args: Any) -> None:
        return

    # ------------------------------------------------------------------ plumbing
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        head: bool = False,
    ) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(
            status,
            json.dumps(obj).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )

    def _error(self, status: int, code: str | None, message: str, head: bool = False) -> None:
        headers = {"X-Error-Message": message, "Content-Type": "application/json"}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, json.dumps({"error": message}).encode(), headers, head=head)

    def _authorized(self) -> bool:
        token = self.fake.token
        return token is None or self.headers.get("Authorization") == f"Bearer {token}"

    def _repo(self, repo_id: str, head: bool = False, write: bool = False) -> Repo | None:
        repo = self.fake.repos.get(repo_id)
        if repo is None or ((repo.private or write) and not self._authorized()):
            self._error(
                404 if self._authorized() else 401, "RepoNotFound", "Repository not found", head
            )
            return None
        return repo

    def _record(self) -> tuple[list[str], dict[str, list[str]]]:
        parts = urlsplit(self.path)
        with self.fake.lock:
            self.fake.requests.append((self.command, parts.path, self.headers.get("Authorization")))
        segments = [unquote(s) for s in parts.path.strip("/").split("/")]
        return segments, parse_qs(parts.query)

    # ------------------------------------------------------------------ routes
    def do_HEAD(self) -> None:
        self._resolve(head=True)

    def do_GET(self) -> None:
        seg, query = self._record()
        if seg[:2] == ["api", "models"] and len(seg) >= 4:
            return self._model_info(seg, query)
        return self._resolve(head=False, seg=seg)

    def do_PUT(self) -> None:
        seg, _ = self._record()
        body = self._body()
        if seg[0] == "lfs" and len(seg) == 2:
            if hashlib.sha256(body).hexdigest() != seg[1]:
                return self._error(400, None, "sha256 mismatch")
            with self.fake.lock:
                self.fake.lfs[seg[1]] = body
            return self._send(200)
        return self._error(404, None, "not found")

    def do_POST(self) -> None:
        seg, _ = self._record()
        body = self._body()
        if seg == ["api", "validate-yaml"]:
            return self._json(200, {"errors": [], "warnings": []})
        if seg == ["api", "repos", "create"]:
            return self._create(json.loads(body))
        if seg[0] == "lfs" and len(seg) == 3 and seg[2] == "verify":
            return self._send(200 if seg[1] in self.fake.lfs else 404)
        if (
            len(seg) >= 5
            and seg[1].endswith(".git")
            and seg[2:] == ["info", "lfs", "objects", "batch"]
        ):
            return self._lfs_batch(f"{seg[0]}/{seg[1][:-4]}", json.loads(body))
        if seg[:2] == ["api", "models"] and len(seg) >= 6:
            repo_id, action, rev = f"{seg[2]}/{seg[3]}", seg[4], "/".join(seg[5:])
            if action == "preupload":
                return self._preupload(repo_id, json.loads(body))
            if action == "commit":
                return self._commit(repo_id, rev, body)
            if action == "branch":
                return self._branch(repo_id, rev)
        return self._error(404, None, f"no route for POST {self.path}")

    def _model_info(self, seg: list[str], query: dict[str, list[str]]) -> None:
        repo_id = f"{seg[2]}/{seg[3]}"
        repo = self._repo(repo_id)
        if repo is None:
            return
        rev = "/".join(seg[5:]) if len(seg) > 5 and seg[4] == "revision" else "main"
        sha = repo.resolve(rev)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for path, data in sorted(repo.commits[sha].items()):
            entry: dict[str, Any] = {"rfilename": path}
            if blobs:
                entry["size"] = len(data)
                if is_lfs(path, data):
                    pointer = lfs_pointer(data)
                    entry["blobId"] = git_blob_sha1(pointer)
                    entry["lfs"] = {
                        "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "pointerSize": len(pointer),
                    }
                else:
                    entry["blobId"] = git_blob_sha1(data)
            siblings.append(entry)
        self._json(200, {"id": repo_id, "sha": sha, "private": repo.private, "siblings": siblings})

    def _resolve(self, head: bool, seg: list[str] | None = None) -> None:
        if seg is None:
            seg, _ = self._record()
        if len(seg) < 5 or seg[2] != "resolve":
            return self._error(404, None, "not found", head)
        repo_id, rev, path = f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:])
        repo = self._repo(repo_id, head=head)
        if repo is None:
            return
        sha = repo.resolve(rev)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
        data = repo.commits[sha].get(path)
        if data is None:
            self.send_response(404)
            for key, value in {
                "X-Error-Code": "EntryNotFound",
                "X-Error-Message": "Entry not found",
                "X-Repo-Commit": sha,
                "Content-Length": "0",
            }.items():
                self.send_header(key, value)
            self.end_headers()
            return
        headers = {"X-Repo-Commit": sha, "Content-Type": "application/octet-stream"}
        if is_lfs(path, data):
            oid = hashlib.sha256(data).hexdigest()
            headers.update({"ETag": f'"{oid}"', "X-Linked-Etag": f'"{oid}"'})
            headers["X-Linked-Size"] = str(len(data))
        else:
            headers["ETag"] = f'"{git_blob_sha1(data)}"'
        if path in repo.corrupt and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        self._send(200, data, headers, head=head)

    def _create(self, payload: dict[str, Any]) -> None:
        if not self._authorized():
            return self._error(401, None, "Invalid credentials")
        repo_id = f"{payload.get('organization')}/{payload['name']}"
        with self.fake.lock:
            if repo_id in self.fake.repos:
                body = {"error": "You already created this model repo", "url": f"/{repo_id}"}
                return self._json(409, body)
            self.fake.repos[repo_id] = Repo(private=payload.get("visibility") == "private")
        self._json(200, {"url": f"{self.fake.url}/{repo_id}", "name": repo_id})

    def _branch(self, repo_id: str, branch: str) -> None:
        repo = self._repo(repo_id, write=True)
        if repo is None:
            return
        with self.fake.lock:
            if branch in repo.branches:
                return self._error(409, None, "Reference already exists")
            if "main" in repo.branches:
                repo.branches[branch] = repo.branches["main"]
            else:
                repo.branches[branch] = ""
        self._json(200, {})

    def _preupload(self, repo_id: str, payload: dict[str, Any]) -> None:
        if self._repo(repo_id, write=True) is None:
            return
        files = []
        for f in payload["files"]:
            sample = base64.b64decode(f["sample"])
            lfs = f["path"].endswith((".safetensors", ".bin", ".pt")) or f["size"] > LFS_MIN_SIZE
            lfs = lfs or b"\0" in sample
            files.append(
                {
                    "path": f["path"],
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                }
            )
        self._json(200, {"files": files})

    def _lfs_batch(self, repo_id: str, payload: dict[str, Any]) -> None:
        if self._repo(repo_id, write=True) is None:
            return
        objects = []
        for obj in payload["objects"]:
            entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.fake.lfs:
                base = f"{self.fake.url}/lfs/{obj['oid']}"
                entry["actions"] = {"upload": {"href": base}, "verify": {"href": base + "/verify"}}
            objects.append(entry)
        self._json(200, {"transfer": "basic", "objects": objects})

    def _commit(self, repo_id: str, rev: str, body: bytes) -> None:
        repo = self._repo(repo_id, write=True)
        if repo is None:
            return
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next(item["value"] for item in lines if item["key"] == "header")
        files: dict[str, bytes] = {}
        for item in lines:
            value = item["value"]
            if item["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] == "lfsFile":
                data = self.fake.lfs.get(value["oid"])
                if data is None:
                    return self._error(400, None, f"LFS object {value['oid']} was never uploaded")
                files[value["path"]] = data
        if repo.branches.get(rev) == "":
            del repo.branches[rev]
        sha = self.fake.commit(repo_id, files, header["summary"], branch=rev)
        self._json(
            200,
            {
                "commitUrl": f"{self.fake.url}/{repo_id}/commit/{sha}",
                "commitOid": sha,
                "pullRequestUrl": None,
            },
        )
