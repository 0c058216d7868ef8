"""The Streamlit training monitor as a child process, served through the suite's own port at /monitor/.

The child binds 127.0.0.1 on a free port with `server.baseUrlPath=monitor`, so every URL it uses already starts
with /monitor/; the routes here forward the paths Streamlit serves: HTTP (bodies capped, compression as each
client asks, responses streamed) and the websocket (`/monitor/_stcore/stream`, with its `streamlit` subprotocol),
which opens only from the suite's own pages and carries their Origin and Host on, so Streamlit's own check
applies. The child dies with its parent (PR_SET_PDEATHSIG on Linux) and is stopped when the server shuts down, so
one process tree serves everything on one port (a Space serves only one).
"""
from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

import httpx
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

MONITOR_APP = Path(__file__).resolve().parent / "training_monitor.py"
PREFIX = "monitor"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child: ask the kernel to SIGTERM it when the parent exits (Linux); elsewhere stop() does it."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class MonitorProcess:
    """The Streamlit monitor child on 127.0.0.1, watching a runs folder."""

    def __init__(self, runs: str, port: Optional[int] = None) -> None:
        self.runs, self.port = runs, port or free_port()
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> "MonitorProcess":
        cmd = [sys.executable, "-m", "streamlit", "run", str(MONITOR_APP), "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(self.port), "--server.baseUrlPath", PREFIX,
               "--browser.gatherUsageStats", "false", "--", "--runs", self.runs]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the training monitor exited at start (code {self.proc.returncode})")
            try:
                with urllib.request.urlopen(f"{self.url}/{PREFIX}/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the training monitor did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


MAX_BODY = 1024 * 1024  # request bodies above this are refused (the monitor uploads nothing; Streamlit's own
# messages travel on the websocket)
# The first path segments under /monitor/ that Streamlit serves: its API, media and components, the app's static
# folder, and its front end's files (index.html, manifest.json, favicon.png, static/).
SERVED = {"", "_stcore", "media", "component", "app", "index.html", "manifest.json", "favicon.png", "static"}


def served(path: str) -> bool:
    """Whether a path under /monitor/ is one Streamlit serves: a known first segment, no NUL, no `..`."""
    if "\x00" in path or ".." in path.split("/") or "\\" in path:
        return False
    return path.split("/", 1)[0] in SERVED


def origin_allowed(origin: Optional[str], host: Optional[str]) -> bool:
    """A websocket may open from the suite's own pages only: no Origin (a non-browser client), the same host as
    the request, or the Space's own domain (SPACE_HOST) where the suite runs as a Space."""
    if origin is None:
        return True
    netloc = urlsplit(origin).netloc
    return bool(netloc) and netloc in {host, os.environ.get("SPACE_HOST")} - {None, ""}


class BodyTooLarge(Exception):
    """A request body passed MAX_BODY."""


async def capped_body(request: Request) -> bytes:
    """The request body, read chunk by chunk and refused once it passes MAX_BODY (never held whole)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise BodyTooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise BodyTooLarge
    return bytes(body)


def proxy_routes(monitor: MonitorProcess) -> list[BaseRoute]:
    """Starlette routes that forward /monitor and the paths Streamlit serves under it to the monitor child."""
    client = httpx.AsyncClient(base_url=monitor.url, timeout=httpx.Timeout(60.0, connect=5.0))

    async def http(request: Request) -> Response:
        path = request.path_params["path"]
        if not served(path):
            return Response("not a path the training monitor serves", status_code=404 if "\x00" not in path
                            else 400)
        try:
            body = await capped_body(request)
        except BodyTooLarge:
            return Response(f"request body over {MAX_BODY // 1024} KiB", status_code=413)
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP | {"accept-encoding"}]
        # Compression as this client asked: without its Accept-Encoding, httpx would ask for gzip on its behalf.
        headers.append(("accept-encoding", request.headers.get("accept-encoding", "identity")))
        try:
            upstream = client.build_request(request.method, request.url.path, params=request.query_params,
                                            headers=headers, content=body)
            response = await client.send(upstream, stream=True)
        except httpx.InvalidURL:
            return Response("bad path", status_code=400)
        except httpx.HTTPError as e:
            return Response(f"the training monitor is not reachable: {type(e).__name__}", status_code=502)
        out_headers = {k: v for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP}

        async def stream():
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
            finally:
                await response.aclose()

        return StreamingResponse(stream(), status_code=response.status_code, headers=out_headers)

    async def websocket(ws: WebSocket) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, WebSocketException
        origin, host = ws.headers.get("origin"), ws.headers.get("host")
        if not served(ws.path_params["path"]) or not origin_allowed(origin, host):
            await ws.close(code=1008)  # before accepting: the client gets HTTP 403
            return
        offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        cookie = ws.headers.get("cookie")
        # The suite's own Host and the browser's Origin go on to Streamlit, whose same-origin check then applies;
        # the TCP connection goes to the child on 127.0.0.1.
        url = f"ws://{host or '127.0.0.1'}{ws.url.path}" + (f"?{ws.url.query}" if ws.url.query else "")
        try:
            upstream = await connect(url, host="127.0.0.1", port=monitor.port, origin=origin,
                                     subprotocols=offered or None, proxy=None, max_size=None,
                                     additional_headers={"cookie": cookie} if cookie else None)
        except (OSError, WebSocketException, asyncio.TimeoutError, ValueError) as e:
            await ws.close(code=1011, reason=f"monitor unreachable: {type(e).__name__}"[:120])
            return
        await ws.accept(subprotocol=upstream.subprotocol)

        async def to_upstream() -> None:
            try:
                while True:
                    message = await ws.receive()
                    if message["type"] == "websocket.disconnect":
                        break
                    await upstream.send(message["bytes"] if message.get("bytes") is not None else message["text"])
            except (WebSocketDisconnect, ConnectionClosed):
                pass

        async def to_client() -> None:
            try:
                async for message in upstream:
                    if isinstance(message, bytes):
                        await ws.send_bytes(message)
                    else:
                        await ws.send_text(message)
            except (WebSocketDisconnect, ConnectionClosed, RuntimeError):
                pass

        tasks = [asyncio.create_task(to_upstream()), asyncio.create_task(to_client())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        await upstream.close()
        try:
            await ws.close()
        except (RuntimeError, WebSocketDisconnect):
            pass  # already closed by the browser

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return [Route(f"/{PREFIX}", lambda request: RedirectResponse(f"/{PREFIX}/"), methods=["GET", "HEAD"]),
            Route(f"/{PREFIX}/{{path:path}}", http, methods=methods),
            WebSocketRoute(f"/{PREFIX}/{{path:path}}", websocket)]
