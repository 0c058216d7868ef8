"""The Streamlit training monitor as a child process, served through the suite's own port at /monitor/.

The child binds 127.0.0.1 on a free port with `server.baseUrlPath=monitor`, so every URL it uses already starts
with /monitor/; the routes here forward HTTP (streamed) and the websocket (`/monitor/_stcore/stream`, with its
`streamlit` subprotocol) unchanged. The child dies with its parent (PR_SET_PDEATHSIG on Linux) and is stopped
when the server shuts down, so one process tree serves everything on one port (a Space serves only one).
"""
from __future__ import annotations

import asyncio
import ctypes
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Optional

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


def proxy_routes(monitor: MonitorProcess) -> list[BaseRoute]:
    """Starlette routes that forward /monitor and everything under it to the monitor child."""
    client = httpx.AsyncClient(base_url=monitor.url, timeout=httpx.Timeout(60.0, connect=5.0))

    async def http(request: Request) -> Response:
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        upstream = client.build_request(request.method, request.url.path, params=request.query_params,
                                        headers=headers, content=await request.body())
        try:
            response = await client.send(upstream, stream=True)
        except httpx.HTTPError as e:
            return Response(f"the training monitor is not reachable: {e}", status_code=502)
        out_headers = {k: v for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP}

        async def body():
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
            finally:
                await response.aclose()

        return StreamingResponse(body(), status_code=response.status_code, headers=out_headers)

    async def websocket(ws: WebSocket) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, WebSocketException
        offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        cookie = ws.headers.get("cookie")
        url = f"ws://127.0.0.1:{monitor.port}{ws.url.path}" + (f"?{ws.url.query}" if ws.url.query else "")
        try:
            upstream = await connect(url, subprotocols=offered or None, proxy=None, max_size=None,
                                     additional_headers={"cookie": cookie} if cookie else None)
        except (OSError, WebSocketException, asyncio.TimeoutError) as e:
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
