"""What the Gradio pages share: the launch settings (flags, else LATENT_LAB_* variables), input checks that name the
field, numeric components that refuse bad API input with a clear message, face images as HTML, and the one way a
page that cannot load its models explains itself."""
from __future__ import annotations

import argparse
import base64
import io
import math
import os
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import gradio as gr
import numpy as np

from core.config import short
from core.devices import resolve_device

ENV = {"models": "LATENT_LAB_MODELS", "device": "LATENT_LAB_DEVICE", "runs": "LATENT_LAB_RUNS"}
MAX_SEED = 2 ** 32 - 1
MAX_FILE_SIZE = "10mb"  # uploads above this are refused by Gradio before they are processed
DISPLAY = 256  # small faces are shown enlarged (nearest neighbour) so their pixels stay honest


SESSION_FILES = Path(tempfile.gettempdir()) / "latent_lab_sessions"  # one folder per browser session
_SESSION_LOCKS: dict[str, threading.Lock] = {}  # one per session folder: a write and the folder's removal never overlap
_CLOSED: dict[str, float] = {}  # ended sessions' folders -> when: a late event's file goes at a later session's end
LATE_EVENT_S = 600.0  # how long after its session ends an event may still write a file
_LOCKS_GUARD = threading.Lock()


def _session_folder(session: str) -> tuple[Path, threading.Lock]:
    name = "".join(c for c in str(session) if c.isalnum())[:64] or "local"
    with _LOCKS_GUARD:
        return SESSION_FILES / name, _SESSION_LOCKS.setdefault(name, threading.Lock())


@contextmanager
def session_file(session: str, name: str) -> Iterator[Path]:
    """A file in the browser session's own folder, to write inside the `with`: each export overwrites its previous
    one, and the folder goes when the session ends (`forget_session`), so events leave no files behind."""
    folder, lock = _session_folder(session)
    with lock:
        folder.mkdir(parents=True, exist_ok=True)
        yield folder / name


def forget_session(request: gr.Request) -> None:
    """`demo.unload` handler: remove a closed session's files, and those that ended sessions' late events wrote."""
    folder, _ = _session_folder(request.session_hash)
    now = time.monotonic()
    with _LOCKS_GUARD:
        _CLOSED[folder.name] = now
        ended = [(n, _SESSION_LOCKS.setdefault(n, threading.Lock())) for n in _CLOSED]
        for name in [n for n, t in _CLOSED.items() if now - t > LATE_EVENT_S]:  # swept once more, below
            del _CLOSED[name]
            _SESSION_LOCKS.pop(name, None)
    for name, lock in ended:
        with lock:
            shutil.rmtree(SESSION_FILES / name, ignore_errors=True)


def on_space() -> bool:
    return bool(os.environ.get("SPACE_ID"))


def launch_parser(description: str, port: int) -> argparse.ArgumentParser:
    """The flags every launcher takes; a flag wins over its LATENT_LAB_* variable, which wins over the default."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--models", default=os.environ.get(ENV["models"], "embedded"),
                   help=f"model set: embedded (offline default), ffhq, hf:owner/name[@rev] (${ENV['models']})")
    p.add_argument("--device", default=os.environ.get(ENV["device"], "auto"),
                   help=f"auto, cpu or cuda (${ENV['device']})")
    p.add_argument("--runs", default=os.environ.get(ENV["runs"], "runs"),
                   help=f"run folder the training monitor watches (${ENV['runs']})")
    p.add_argument("--host", default="0.0.0.0" if on_space() else "127.0.0.1",
                   help="address to bind (default 127.0.0.1; 0.0.0.0 on a Hugging Face Space)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", port)))
    return p


def zero_gpu() -> bool:
    """Whether this is a ZeroGPU Space (SPACES_ZERO_GPU set): a GPU only while a `spaces.GPU` function runs."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")


def gpu(fn: Callable) -> Callable:
    """`spaces.GPU(fn)` on a ZeroGPU Space (the `spaces` package present and SPACES_ZERO_GPU set): the GPU is
    attached while fn runs. Elsewhere fn itself."""
    if not zero_gpu():
        return fn
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(fn)


def load_errors() -> tuple[type[BaseException], ...]:
    """The errors that mean "these models cannot be loaded" (the page says so instead of failing)."""
    from core.checkpoints import CheckpointError
    from core.hub import HubError
    return HubError, CheckpointError, ValueError, OSError, KeyError


PROJECT = Path(__file__).resolve().parent.parent


def public_message(error: BaseException | str) -> str:
    """An error as a visitor may read it: one line, without the server's file system (paths inside the project
    are shown relative to it, the home and temporary folders by name)."""
    from core.config import one_line
    text = one_line(error) if isinstance(error, BaseException) else str(error)
    for folder, shown in ((PROJECT, ""), (Path(tempfile.gettempdir()), "<tmp>/"), (Path.home(), "~/")):
        text = text.replace(f"{folder}/", shown).replace(str(folder), shown.rstrip("/") or ".")
    return text


def unavailable(title: str, models: str, error: BaseException) -> gr.Blocks:
    """The page shown in place of one whose models cannot be loaded: what failed (for a missing role: which one,
    and the command that builds it)."""
    with gr.Blocks(title=title) as demo:
        gr.Markdown(f"## {title}\n**Not available for model set `{models[:80]}`:** {public_message(error)}")
    return demo


def page_or_note(page: Callable[[str, str], gr.Blocks], title: str, models: str, device: str) -> gr.Blocks:
    """`page(models, device)`, or the note saying why its models cannot be loaded."""
    try:
        return page(models, device)
    except load_errors() as e:
        return unavailable(title, models, e)


def serve(page: Callable[[str, str], gr.Blocks], title: str, port: int, argv: Optional[list[str]] = None) -> None:
    """Run one page on its own (python -m apps.<page>), with the suite's flags and limits."""
    args = launch_parser(f"{title} (Gradio)", port).parse_args(argv)
    from apps import live
    demo = page_or_note(page, title, args.models, resolve_device(args.device))
    demo.queue(default_concurrency_limit=2).launch(server_name=args.host, server_port=args.port,
                                                   max_file_size=MAX_FILE_SIZE, app_kwargs={"routes": live.routes()})


# Gradio concurrency groups, sized for a 2-core CPU: slider edits (about 30 ms each) keep two slots of their own,
# so they never wait behind the heavy calls (a mix, a projection, a sweep video: up to seconds), which run one at a
# time in theirs; the VAE lab has its own. VP jobs are limited by JobSlots instead (one per session, two in all).
GROUPS = {"edit": 2, "heavy": 1, "vae": 1}


def group(name: str) -> dict[str, Any]:
    """The event keywords that put a handler in a concurrency group (`.click(fn, ..., **group("edit"))`)."""
    return {"concurrency_id": name, "concurrency_limit": GROUPS[name]}


class JobSlots:
    """Heavy jobs (VP scoring, report cards): one at a time per browser session and `total` on the server; a
    job beyond that is refused at once with a message saying what is running, instead of piling up."""

    def __init__(self, total: int = 2) -> None:
        self.total = total
        self.running: dict[str, str] = {}
        self.lock = threading.Lock()

    @contextmanager
    def hold(self, session: str, what: str) -> Iterator[None]:
        with self.lock:
            if session in self.running:
                raise gr.Error(f"Busy: this page is already running {self.running[session]}. Stop it or wait for "
                               f"it to finish.")
            if len(self.running) >= self.total:
                raise gr.Error(f"Busy: the server is running {len(self.running)} heavy jobs for other visitors; "
                               f"try again in a minute.")
            self.running[session] = what
        try:
            yield
        finally:
            with self.lock:
                self.running.pop(session, None)


JOBS = JobSlots()


def as_number(value: Any, field: str, lo: float, hi: float, whole: bool = False) -> float:
    """`value` as a finite number in [lo, hi] (a whole one if asked), or a gr.Error that names the field."""
    kind = "a whole number" if whole else "a number"
    if isinstance(value, bool) or value is None:
        raise gr.Error(f"{field} must be {kind} from {lo:g} to {hi:g}, got {short(value)}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{field} must be {kind} from {lo:g} to {hi:g}, got {short(value)}") from None
    if not math.isfinite(number) or not lo <= number <= hi or (whole and number != int(number)):
        raise gr.Error(f"{field} must be {kind} from {lo:g} to {hi:g}, got {short(value)}")
    return int(number) if whole else number


class _Checked:
    """Mixin for numeric components: bad API input (text, None, NaN, out of range) gets a message naming the
    field instead of a failure inside Gradio's own conversion."""

    def get_block_name(self) -> str:  # rendered by the Gradio component's own front end
        return next(c for c in type(self).__mro__ if c.__module__.startswith("gradio.")).__name__.lower()

    def get_block_class(self) -> str:
        return self.get_block_name()

    def preprocess(self, payload: Any) -> Any:
        lo = -math.inf if self.minimum is None else self.minimum
        hi = math.inf if self.maximum is None else self.maximum
        value = as_number(payload, self.label or "value", lo, hi, whole=self.precision == 0)
        return super().preprocess(value)


class Number(_Checked, gr.Number):
    """gr.Number that names itself in the error for a bad value."""


class Slider(_Checked, gr.Slider):
    """gr.Slider that names itself in the error for a bad value."""


def check_seed_psi(seed: Any, psi: Any) -> tuple[int, float]:
    """Seed and truncation as numbers in range, or a message in the UI."""
    return (int(as_number(seed, "seed", 0, MAX_SEED, whole=True)), as_number(psi, "truncation", 0.0, 1.5))


def parse_seeds(text: Any, what: str, most: int) -> list[int]:
    """'1, 2, 3' -> [1, 2, 3], at most `most` seeds, or a message in the UI."""
    parts = [p for p in str(text or "").replace(";", ",").replace(" ", ",").split(",") if p]
    if not parts:
        raise gr.Error(f"{what}: give one to {most} seeds, e.g. 1, 2, 3")
    if len(parts) > most:
        raise gr.Error(f"{what}: at most {most} seeds, got {len(parts)}")
    return [int(as_number(p, f"{what}: {short(p, 30)}", 0, MAX_SEED, whole=True)) for p in parts]


def native_array(image: Any) -> np.ndarray:
    """[3, H, W] tensor in [0, 1] -> uint8 HxWx3 at the image's own size."""
    return (image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)


def to_array(image: Any) -> np.ndarray:
    """[3, H, W] tensor in [0, 1] -> uint8 HxWx3, enlarged by a whole factor up to DISPLAY pixels."""
    array = native_array(image)
    k = max(1, DISPLAY // array.shape[0])
    return array.repeat(k, axis=0).repeat(k, axis=1)


def image_format(array: np.ndarray) -> str:
    """How a face image is sent: PNG up to 256 px (exact, a few kB), JPEG above, where a PNG would be megabytes per
    update."""
    return "png" if max(array.shape[:2]) <= 256 else "jpeg"


def image_bytes(array: np.ndarray, kind: str = "") -> bytes:
    """A uint8 HxWx3 image as PNG (fast compression) or JPEG (quality 95); by default as `image_format` says."""
    from PIL import Image
    kind = kind or image_format(array)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=kind, **({"compress_level": 1} if kind == "png" else {"quality": 95}))
    return buf.getvalue()


def face_html(array: np.ndarray, label: str) -> str:
    """A face as self-contained HTML: the image as a data URL (PNG up to 256 px, JPEG above, where PNG would be
    megabytes per update), shown at least DISPLAY px wide with square pixels."""
    h, w = array.shape[:2]
    kind = image_format(array)
    url = f"data:image/{kind};base64,{base64.b64encode(image_bytes(array, kind)).decode()}"
    shown = max(DISPLAY, min(w, 512))
    style = "image-rendering:pixelated;max-width:100%;height:auto;display:block;margin:0 auto"
    return (f'<figure style="margin:0;text-align:center"><img alt="{label}" src="{url}" width="{shown}" '
            f'height="{shown * h // w}" style="{style}"><figcaption>{label} ({w} x {h})</figcaption></figure>')
