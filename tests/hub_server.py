"""A stand-in Hugging Face Hub on 127.0.0.1 for tests: serves files the test made, with the Hub's headers.

Downloads: HEAD/GET /{repo}/resolve/{revision}/{path} with X-Repo-Commit, ETag and Content-Length, byte ranges
(huggingface_hub resumes with a Range request when it got whole chunks), and the Hub's X-Error-Code on 404s.
Faults on request: `truncate_once`
(the first GET of a file stops half-way and drops the connection), `truncate_always`, `corrupt` (serves junk).
Uploads, the path huggingface_hub's HfApi really takes: repo creation (models and Spaces, with their SDK; an
existing name answers 409 as the Hub does), model-card YAML validation, preupload (files of 10 MB or more, and
safetensors, go to LFS; the rest travel in the commit), the LFS batch API with basic transfers (PUT, then verify),
NDJSON commits (a commit naming an LFS object that was never uploaded is refused), repo info by revision (what
snapshot_download lists), and a Space's variables and hardware. Repositories are keyed "owner/name" for models
and "spaces/owner/name" for Spaces. Faults on request: `fail_lfs_puts` (that many LFS uploads drop their
connection), `refuse_commits` (that many commits answer 500).
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

import yaml


class FakeHub:
    def __init__(self) -> None:
        self.commits: dict[str, dict[str, dict[str, bytes]]] = {}  # repo -> commit -> files
        self.branches: dict[str, dict[str, str]] = {}  # repo -> branch -> commit
        self.requests: list[tuple[str, str, Optional[str]]] = []  # (method, path, Range header)
        self.truncate_once: set[str] = set()
        self.truncate_always: set[str] = set()
        self.corrupt: set[str] = set()
        self.sdk: dict[str, str] = {}  # Space -> its SDK
        self.lfs: dict[str, bytes] = {}  # uploaded LFS objects by sha256
        self.variables: dict[str, dict[str, dict[str, str]]] = {}  # Space -> key -> {"value", "description"}
        self.hardware: dict[str, str] = {}  # Space -> requested flavor
        self.fail_lfs_puts = 0
        self.refuse_commits = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def commit(self, repo: str, files: dict[str, bytes], branch: str = "main") -> str:
        """Add a commit holding the previous files of `branch` updated by `files`; returns its 40-hex id."""
        previous = self.commits.get(repo, {}).get(self.branches.get(repo, {}).get(branch, ""), {})
        merged = {**previous, **files}
        sha = hashlib.sha1(repr(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in merged.items())).encode()
                           + str(len(self.commits.get(repo, {}))).encode()).hexdigest()
        self.commits.setdefault(repo, {})[sha] = merged
        self.branches.setdefault(repo, {})[branch] = sha
        return sha

    def gets(self, filename: str) -> list[tuple[str, str, Optional[str]]]:
        return [r for r in self.requests if r[0] == "GET" and r[1].endswith("/" + filename)]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _send(self, code: int, body: bytes = b"", headers: Optional[dict[str, str]] = None) -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _json(self, obj, code: int = 200) -> None:
                self._send(code, json.dumps(obj).encode(), {"Content-Type": "application/json"})

            def _resolve(self) -> None:
                hub.requests.append((self.command, self.path, self.headers.get("Range")))
                m = re.match(r"^/((?:spaces/)?[^/]+/[^/]+)/resolve/([^/]+)/(.+)$", self.path.split("?")[0])
                if not m:
                    return self._send(404, headers={"X-Error-Code": "EntryNotFound"})
                repo, rev, name = m.groups()
                if repo not in hub.commits:
                    return self._send(401, headers={"X-Error-Code": "RepoNotFound",
                                                    "X-Error-Message": "Repository not found"})
                sha = hub.branches[repo].get(rev, rev)
                if sha not in hub.commits[repo]:
                    return self._send(404, headers={"X-Error-Code": "RevisionNotFound",
                                                    "X-Error-Message": "Invalid rev id"})
                files = hub.commits[repo][sha]
                if name not in files:
                    return self._send(404, headers={"X-Error-Code": "EntryNotFound",
                                                    "X-Error-Message": "Entry not found"})
                data = files[name]
                if name in hub.corrupt:
                    data = bytes(len(data))
                headers = {"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                           "Accept-Ranges": "bytes"}
                if self.command == "HEAD":
                    return self._send(200, b"", {**headers, "X-Linked-Size": str(len(data))})
                start = 0
                rng = re.match(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if rng:
                    start = int(rng.group(1))
                body = data[start:]
                self.send_response(206 if rng else 200)
                for k, v in headers.items():
                    self.send_header(k, v)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = name in hub.truncate_always or (name in hub.truncate_once and len(hub.gets(name)) == 1)
                if cut:
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return None
                self.wfile.write(body)
                return None

            def do_HEAD(self) -> None:
                self._resolve()

            def do_GET(self) -> None:
                m = re.match(r"^/api/(models|spaces)/([^/]+/[^/]+?)(?:/revision/([^/?]+))?/?(?:\?.*)?$", self.path)
                if m:
                    return self._repo_info(*m.groups())
                self._resolve()

            def _repo_info(self, kind: str, name: str, revision: Optional[str]) -> None:
                hub.requests.append(("GET", self.path, None))
                repo = name if kind == "models" else f"spaces/{name}"
                if repo not in hub.commits:
                    return self._send(404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"})
                sha = hub.branches[repo].get(revision or "main", revision or "")
                if sha not in hub.commits[repo] and revision is not None:
                    return self._send(404, b'{"error": "Invalid rev id"}', {"X-Error-Code": "RevisionNotFound"})
                files = hub.commits[repo].get(sha, {})
                return self._json({"id": name, "sha": sha or None, "private": False, "sdk": hub.sdk.get(repo),
                                   "siblings": [{"rfilename": f, "size": len(v)} for f, v in sorted(files.items())]})

            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                hub.requests.append(("PUT", self.path, None))
                m = re.match(r"^/lfs-upload/([0-9a-f]{64})$", self.path)
                if not m:
                    return self._send(404)
                if hub.fail_lfs_puts > 0:  # the connection drops part-way through the upload
                    hub.fail_lfs_puts -= 1
                    self.rfile.read(min(length, 4096))
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return None
                body = self.rfile.read(length)
                if hashlib.sha256(body).hexdigest() != m.group(1):
                    return self._json({"error": "content does not match its oid"}, 400)
                hub.lfs[m.group(1)] = body
                return self._send(200)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                hub.requests.append(("POST", self.path, None))
                path = self.path.split("?")[0]
                if path == "/api/repos/create":
                    info = json.loads(body)
                    name = f"{info['organization']}/{info['name']}" if info.get("organization") else info["name"]
                    repo = f"spaces/{name}" if info.get("type") == "space" else name
                    if repo in hub.commits:
                        return self._json({"error": "You already created this repo", "url": f"{hub.url}/{repo}"},
                                          409)
                    hub.commits.setdefault(repo, {})
                    hub.branches.setdefault(repo, {})
                    if info.get("type") == "space":
                        hub.sdk[repo] = info.get("sdk", "")
                    return self._json({"url": f"{hub.url}/{repo}", "name": name})
                if path == "/api/validate-yaml":  # the model card's front matter must parse
                    content = json.loads(body)["content"]
                    front = content.split("---")[1] if content.startswith("---") else ""
                    try:
                        yaml.safe_load(front)
                    except yaml.YAMLError as e:
                        return self._json({"error": f"invalid YAML: {e}"}, 400)
                    return self._json({"warnings": []})
                m = re.match(r"^/((?:spaces/)?[^/]+/[^/]+)\.git/info/lfs/objects/batch$", path)
                if m:
                    objects = []
                    for obj in json.loads(body)["objects"]:
                        entry = {"oid": obj["oid"], "size": obj["size"]}
                        if obj["oid"] not in hub.lfs:
                            entry["actions"] = {"upload": {"href": f"{hub.url}/lfs-upload/{obj['oid']}"},
                                                "verify": {"href": f"{hub.url}/lfs-verify"}}
                        objects.append(entry)
                    return self._json({"transfer": "basic", "objects": objects})
                if path == "/lfs-verify":
                    oid = json.loads(body)["oid"]
                    return self._json({}) if oid in hub.lfs else self._json({"error": "not uploaded"}, 404)
                m = re.match(r"^/api/spaces/([^/]+/[^/]+)/(variables|hardware)$", path)
                if m:
                    repo = f"spaces/{m.group(1)}"
                    if repo not in hub.commits:
                        return self._send(404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"})
                    info = json.loads(body)
                    if m.group(2) == "hardware":
                        hub.hardware[repo] = info["flavor"]
                        return self._json({"stage": "BUILDING", "hardware": {"current": None,
                                                                             "requested": info["flavor"]}})
                    hub.variables.setdefault(repo, {})[info["key"]] = {"value": info["value"],
                                                                       "description": info.get("description")}
                    return self._json(hub.variables[repo])
                m = re.match(r"^/api/(models|spaces)/([^/]+/[^/]+)/(preupload|commit)/([^/]+)$", path)
                if not m:
                    return self._send(404, headers={"X-Error-Code": "EntryNotFound"})
                kind, name, action, branch = m.groups()
                repo = name if kind == "models" else f"spaces/{name}"
                if action == "preupload":
                    files = json.loads(body)["files"]
                    return self._json({"files": [
                        {"path": f["path"], "shouldIgnore": False,
                         "uploadMode": "lfs" if f["size"] >= 10 * 1024 * 1024 or f["path"].endswith(".safetensors")
                         else "regular"} for f in files]})
                if hub.refuse_commits > 0:
                    hub.refuse_commits -= 1
                    return self._json({"error": "Internal Error"}, 500)
                added = {}
                for line in body.decode().splitlines():
                    item = json.loads(line)
                    if item["key"] == "file":
                        added[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    elif item["key"] == "lfsFile":
                        oid = item["value"]["oid"]
                        if oid not in hub.lfs:
                            return self._json({"error": f"LFS object {oid} was never uploaded"}, 400)
                        added[item["value"]["path"]] = hub.lfs[oid]
                sha = hub.commit(repo, added, branch)
                return self._json({"commitUrl": f"{hub.url}/{repo}/commit/{sha}", "commitOid": sha,
                                   "success": True})

        return Handler
