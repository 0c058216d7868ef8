"""The live view: a page's face redrawn while a slider is dragged, over a websocket on the suite's own port.

Gradio's event path costs about 100 ms a step on a 2-core CPU before any model runs (its queue, the reply's
serialisation, the front end re-rendering the page's components), so it cannot paint 20 faces a second. A page
that wants a live face makes a `LiveView(render, names)`: `render(values, face)` draws the face for the sliders'
values (a dict by field name, as the browser read them) and an optional face key; `component()` is a small gr.HTML
whose script listens to the sliders' `input` events, sends their values to `/live/<key>` and paints each frame
that comes back into the page's face image. One request is in flight per page; values that arrive meanwhile replace
each other (in the browser and on the server), so only the newest is drawn, and the released value's face is the
last frame, at the generator's size (PNG, exact; JPEG above 256 px, as the page's own images). The page's Gradio
events stay for the API, the download and the final face, and run on release; while the socket is not open
(refused, blocked by a proxy) the script fires that event on every move instead, so the page updates through
Gradio as before. Under ZeroGPU (where only Gradio's
queue holds the GPU) or with LATENT_LAB_LIVE=0 there is no live view at all.
"""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import weakref
from typing import Any, Callable, Optional

import anyio
import gradio as gr
import numpy as np
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from apps.common import GROUPS, image_bytes, public_message, short, zero_gpu
from apps.monitor_proxy import origin_allowed

PATH = "live"  # the websocket is at /live/<key>, beside the Gradio app's own routes
MAX_MESSAGE = 16_384  # bytes of slider values per message; more is not a page's sliders
_VIEWS: "weakref.WeakValueDictionary[str, LiveView]" = weakref.WeakValueDictionary()
_LIMITER: Optional[anyio.CapacityLimiter] = None  # frames: as many at once as Gradio's edit group (made in the loop)

Render = Callable[[dict[str, Any], str], np.ndarray]


def enabled() -> bool:
    """Whether pages get a live view: not under ZeroGPU (its GPU is held only inside Gradio's queue) and not
    turned off with LATENT_LAB_LIVE=0."""
    if zero_gpu():
        return False
    return os.environ.get("LATENT_LAB_LIVE", "1").lower() not in ("0", "false", "no")


class LiveView:
    """One page's live face: its renderer, the fields it reads, and the key of its websocket.

    `names` are the fields sent (the keys of `values`); the page gives each field's Gradio input the elem_id
    `fields[name]`. `target` is the alt text of the image the frames are painted into. The page must keep the
    view alive (the registry holds it weakly, so views of closed pages go away)."""

    def __init__(self, render: Render, names: list[str], target: str = "after") -> None:
        self.render, self.target = render, target
        self.key = secrets.token_hex(8)
        self.fields = {name: f"live-{self.key}-{i}" for i, name in enumerate(names)}
        _VIEWS[self.key] = self

    def component(self) -> gr.HTML:
        """The page's live script, in a gr.HTML that shows one status line; its value is the face key sent with
        every request ('' for none), set by the page's events when an upload replaces the seed's face."""
        props = json.dumps({"key": self.key, "path": PATH, "fields": self.fields, "target": self.target})
        return gr.HTML(value="", html_template='<span class="live-status"></span>',
                       js_on_load=f"const live = {props};\n{SCRIPT}", padding=False, container=False)

    def frame(self, message: Any) -> bytes:
        """The image of one request's face (PNG, JPEG above 256 px as on the page), or a ValueError with a
        visitor-readable reason."""
        if not isinstance(message, dict) or not isinstance(message.get("values"), dict):
            raise ValueError("a live request is {id, values: {field: value}, face}")
        values = {name: message["values"].get(name) for name in self.fields}
        face = message.get("face") or ""
        if not isinstance(face, str):
            raise ValueError(f"face must be a key, got {short(face)}")
        try:
            return image_bytes(self.render(values, face))
        except gr.Error as e:
            raise ValueError(e.message) from None


async def _serve(ws: WebSocket) -> None:
    """One browser page's socket: read requests as they come (the newest replaces any not yet drawn), draw the
    newest whenever the last one is sent. A frame is 4 bytes of request id (big-endian) and the image; a refused
    request is a JSON text {id, error}."""
    global _LIMITER
    view = _VIEWS.get(ws.path_params["key"])
    if view is None or not origin_allowed(ws.headers.get("origin"), ws.headers.get("host")):
        await ws.close(code=4403 if view is not None else 4404)
        return
    await ws.accept()
    if _LIMITER is None:
        _LIMITER = anyio.CapacityLimiter(GROUPS["edit"])
    newest: list[Any] = []
    ready = asyncio.Event()

    async def draw() -> None:
        while True:
            await ready.wait()
            ready.clear()
            message = newest.pop()
            ident = message.get("id", 0) if isinstance(message, dict) else 0
            ident = ident if isinstance(ident, int) and 0 <= ident < 2 ** 32 else 0
            try:
                frame = await anyio.to_thread.run_sync(view.frame, message, limiter=_LIMITER)
            except ValueError as e:
                await ws.send_text(json.dumps({"id": ident, "error": public_message(str(e))}))
                continue
            await ws.send_bytes(ident.to_bytes(4, "big") + frame)

    drawing = asyncio.create_task(draw())
    try:
        while not drawing.done():
            received = await ws.receive()
            if received["type"] == "websocket.disconnect":
                break
            text = received.get("text")
            if text is None or len(text) > MAX_MESSAGE:
                await ws.close(code=1009, reason=f"a live request is JSON text of at most {MAX_MESSAGE} bytes")
                break
            try:
                newest[:] = [json.loads(text)]
            except json.JSONDecodeError:
                newest[:] = [None]
            ready.set()
    except (WebSocketDisconnect, RuntimeError):
        pass  # the page went away
    finally:
        drawing.cancel()


def routes() -> list[BaseRoute]:
    """The live views' websocket route, for the app that serves the pages (app.py, a page alone, a test)."""
    return [WebSocketRoute(f"/{PATH}/{{key}}", _serve)]


# The browser side. `live` holds the view's key, path, fields (name -> elem_id) and target image; Gradio gives
# `element` (this component) and `props` (its value: the face key). Reads every field on each input event (the
# moved one from the event itself, since Gradio updates a slider's number box a moment later), keeps DEPTH
# requests in flight and only the newest waiting, and paints frames as blob URLs into the target image.
SCRIPT = r"""
const status = () => element.querySelector('.live-status');
const base = new URL(live.path + '/' + live.key, window.location.origin + window.location.pathname);
base.protocol = base.protocol === 'https:' ? 'wss:' : 'ws:';
const DEPTH = 1;  // requests in flight (two drew no more faces a second on 2 cores shared with the browser)
let socket = null, done = 0, waiting = null, next = 1, url = null, retry = 0;
element.dataset.liveView = live.key;
function read(id) {
  const box = document.getElementById(id);
  if (!box) return null;
  const input = box.querySelector('input[type=range]') || box.querySelector('input');
  return input ? input.value : null;
}
function values(event) {
  const out = {};
  for (const [name, id] of Object.entries(live.fields)) {
    const box = document.getElementById(id);
    out[name] = box && event && box.contains(event.target) ? event.target.value : read(id);
  }
  return out;
}
function send() {
  if (next - 1 - done >= DEPTH || !waiting || !socket || socket.readyState !== 1) return;
  socket.send(JSON.stringify({id: next++, values: waiting, face: props.value || ''}));
  waiting = null;
}
function connect() {
  if (socket && socket.readyState <= 1) return;
  if (Date.now() < retry) return;
  socket = new WebSocket(base.href);
  socket.binaryType = 'arraybuffer';
  socket.onopen = () => { element.dataset.live = 'on'; send(); };
  socket.onclose = () => { element.dataset.live = 'off'; done = next - 1; socket = null; retry = Date.now() + 2000; };
  socket.onmessage = (message) => {
    // replies come in order, one for each request drawn; an answer to request n settles every earlier one
    if (typeof message.data === 'string') {
      const reply = JSON.parse(message.data);
      done = Math.max(done, reply.id || 0);
      const s = status();
      if (s) s.textContent = reply.error || '';
    } else {
      const id = new DataView(message.data).getUint32(0);
      done = Math.max(done, id);
      const img = document.querySelector('img[alt="' + live.target + '"]');
      if (img) {
        const png = new Uint8Array(message.data, 4, 1)[0] === 0x89;  // else JPEG (faces above 256 px)
        const fresh = URL.createObjectURL(new Blob([message.data.slice(4)], {type: png ? 'image/png' : 'image/jpeg'}));
        img.src = fresh;
        if (url) URL.revokeObjectURL(url);
        url = fresh;
        element.dataset.shown = String(id);
        const s = status();
        if (s) s.textContent = '';
      }
    }
    send();
  };
}
function mine(target) {
  return Object.values(live.fields).some((id) => {
    const box = document.getElementById(id);
    return box && box.contains(target);
  });
}
function release(target) {
  target.dispatchEvent(new PointerEvent('pointerup', {bubbles: true}));
}
document.addEventListener('input', (event) => {
  if (!mine(event.target)) return;
  if (!socket || socket.readyState !== 1) {  // no live view (blocked, refused): Gradio's event on every move
    connect();
    if (event.target.type === 'range') release(event.target);
    return;
  }
  waiting = values(event);
  element.dataset.sent = String(next);
  send();
}, true);
// Gradio's `release` (the exact final face, the download) fires on pointerup; keys move a slider without one,
// so a pause of 300 ms after the last key stands in for it.
let pause = null;
document.addEventListener('keyup', (event) => {
  const target = event.target;
  if (target.type !== 'range' || !mine(target)) return;
  clearTimeout(pause);
  pause = setTimeout(() => release(target), 300);
}, true);
connect();
"""
