"""A stand-in Hugging Face Hub on 127.0.0.1 for tests: serves files the test made, with the Hub's headers.

Downloads: HEAD/GET /{repo}/resolve/{revision}/{path} with X-Repo-Commit, ETag and Content-Length, byte ranges
(huggingface_hub resumes with a Range request when it got whole chunks), and the Hub's X-Error-Code on 404s.
Faults on request: `truncate_once`
(the first GET of a file stops half-way and drops the connection), `truncate_always`, `corrupt` (serves junk).
Uploads: create repo, model-card YAML validation, preupload (every file 'regular') and NDJSON commits, enough for
HfApi.upload_folder.
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
                m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", self.path.split("?")[0])
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
                self._resolve()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                hub.requests.append(("POST", self.path, None))
                path = self.path.split("?")[0]
                if path == "/api/repos/create":
                    info = json.loads(body)
                    repo = f"{info['organization']}/{info['name']}" if info.get("organization") else info["name"]
                    hub.commits.setdefault(repo, {})
                    hub.branches.setdefault(repo, {})
                    return self._json({"url": f"{hub.url}/{repo}", "name": repo})
                if path == "/api/validate-yaml":  # the model card's front matter must parse
                    content = json.loads(body)["content"]
                    front = content.split("---")[1] if content.startswith("---") else ""
                    try:
                        yaml.safe_load(front)
                    except yaml.YAMLError as e:
                        return self._json({"error": f"invalid YAML: {e}"}, 400)
                    return self._json({"warnings": []})
                m = re.match(r"^/api/models/([^/]+/[^/]+)/(preupload|commit)/([^/]+)$", path)
                if not m:
                    return self._send(404, headers={"X-Error-Code": "EntryNotFound"})
                repo, action, branch = m.groups()
                if action == "preupload":
                    files = json.loads(body)["files"]
                    return self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                 for f in files]})
                added = {}
                for line in body.decode().splitlines():
                    item = json.loads(line)
                    if item["key"] == "file":
                        added[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                sha = hub.commit(repo, added, branch)
                return self._json({"commitUrl": f"{hub.url}/{repo}/commit/{sha}", "commitOid": sha,
                                   "success": True})

        return Handler
