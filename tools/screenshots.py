"""The README's pictures of the suite: start it on 127.0.0.1, use each tab in headless Chromium, save one PNG per tab.

`python -m tools.screenshots [--pages mixing sliders vp vae monitor] [--out docs] [--runs runs]` re-takes them after
a model changes. It needs the test tools (playwright, requirements-dev.txt) and a system Chromium; the monitor
picture watches the run folders under --runs.
"""
from __future__ import annotations

import argparse
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import app
from apps.monitor_proxy import free_port

# flags for a headless Chromium on a machine without a network or a display (no background requests, no sandbox)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# the sliders page's edited face (its data-URL src, '' before the first one): what a slider move changes
AFTER_SRC = "() => { const i = document.querySelector('img[alt=after]'); return i ? i.src : ''; }"
# The live view has painted the face of the newest values it was given.
LIVE_SETTLED = "() => { const v = document.querySelector('[data-live-view]').dataset; return v.shown === v.sent; }"
# The "after" image's pixels at its own size, RGB, row by row.
IMAGE_PIXELS = """() => { const i = document.querySelector('img[alt=after]');
    const c = document.createElement('canvas'); c.width = i.naturalWidth; c.height = i.naturalHeight;
    const g = c.getContext('2d'); g.drawImage(i, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data; const out = [];
    for (let k = 0; k < d.length; k += 4) out.push(d[k], d[k + 1], d[k + 2]); return out; }"""
# In the page: input events' times (window.inputs) and the "after" image's changes (a new src, or a new image
# where Gradio re-rendered the HTML), at the next animation frame after the change (window.paints).
WATCH_PAINTS = """() => {
  window.inputs = []; window.paints = [];
  document.addEventListener('input', () => window.inputs.push(performance.now()), true);
  const after = (node) => node.nodeType === 1 &&
    (node.matches('img[alt=after]') || node.querySelector('img[alt=after]'));
  new MutationObserver((changes) => {
    if (changes.some((c) => c.type === 'attributes' ? after(c.target) : [...c.addedNodes].some(after))) {
      requestAnimationFrame(() => window.paints.push(performance.now()));
    }
  }).observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
}"""
WAIT_MS = 300_000  # the slowest step, VP's first answer, takes about 80 s on a 2-core CPU


def drag(page: Any, slider: Any, start: float, stop: float, moves: int) -> None:
    """Press the mouse on a slider at `start` (a fraction of its width) and move it to `stop` in `moves` steps, one
    every 33 ms as a hand drags; the button stays down (the caller releases it with `page.mouse.up()`)."""
    box = slider.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + start * box["width"], y)
    page.mouse.down()
    for i in range(moves):
        page.mouse.move(box["x"] + (start + (stop - start) * i / moves) * box["width"], y)
        page.wait_for_timeout(33)


def chromium_path() -> Optional[str]:
    """The system Chromium (Playwright never downloads its own browser here), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator:
    """A Playwright page in headless Chromium with a viewport of width x height; closed on exit."""
    from playwright.sync_api import sync_playwright
    path = chromium_path()
    if path is None:
        raise RuntimeError("no Chromium found: install it (Debian: apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def _mixing(page) -> None:
    page.get_by_role("button", name="Mix", exact=True).click()
    page.locator("#mix-scores").get_by_text("similarity").first.wait_for(timeout=WAIT_MS)
    for accordion, button in [("Grid: identities", "Make grid"), ("Interpolation strips", "Make strips")]:
        page.get_by_text(accordion).click()
        page.get_by_role("button", name=button, exact=True).click()
    sizes = page.get_by_text(re.compile(r"^\d+(\.\d+)?\s*[KM]B"))  # a file's size shows once it is written
    sizes.nth(3).wait_for(timeout=WAIT_MS)  # grid.png, grid.zip, identity.gif, attributes.gif


def _sliders(page) -> None:
    page.wait_for_function(f"({AFTER_SRC})().length > 0", timeout=WAIT_MS)
    first = page.evaluate(AFTER_SRC)
    page.get_by_label(re.compile(r"^number input for smile")).fill("2")
    page.keyboard.press("Enter")
    page.wait_for_function(f"({AFTER_SRC})() !== {first!r}", timeout=WAIT_MS)


def _vp(page) -> None:
    page.get_by_role("button", name="Score", exact=True).click()
    page.locator("#vp-summary").get_by_text("VP score").wait_for(timeout=WAIT_MS)
    page.locator(".js-plotly-plot").nth(1).wait_for(timeout=WAIT_MS)


def _vae(page) -> None:
    page.get_by_role("button", name="Reconstruct", exact=True).click()
    page.get_by_text("reconstruction SSIM").wait_for(timeout=WAIT_MS)
    page.get_by_text("Samples from the prior").click()
    page.get_by_role("button", name="Sample", exact=True).click()
    page.get_by_text("z ~ N(0, I)").first.wait_for(timeout=WAIT_MS)


def _monitor(page) -> None:
    page.frame_locator("iframe[title='training monitor']").locator(".js-plotly-plot").first.wait_for(
        timeout=WAIT_MS)
    page.wait_for_timeout(3000)  # the remaining charts and the sample image draw just after the first chart


# name: (tab, what to do in it, file, viewport width, whole page or the viewport only)
PAGES: dict[str, tuple[str, Callable, str, int, bool]] = {
    "mixing": ("Face mixing", _mixing, "app_mixing.png", 960, True),
    "sliders": ("Latent sliders", _sliders, "app_sliders.png", 1280, True),
    "vp": ("VP metric", _vp, "app_vp.png", 1400, True),
    "vae": ("VAE lab", _vae, "app_vae.png", 1400, True),
    "monitor": (app.MONITOR_TITLE, _monitor, "monitor.png", 1400, False),
}


def take(pages: list[str], out: Path, models: str = "embedded", runs: str = "runs") -> list[Path]:
    """Serve the suite (with the monitor when it is asked for), picture each page in `pages`; returns the files."""
    unknown = sorted(set(pages) - set(PAGES))
    if unknown:
        raise ValueError(f"unknown page(s) {unknown}: choose from {sorted(PAGES)}")
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = ["--models", models, "--device", "cpu", "--runs", runs, "--port", str(port),
            "--monitor" if "monitor" in pages else "--no-monitor"]
    demo, monitor = app.launch(app.parse_args(argv), block=False)
    written = []
    try:
        for name in pages:
            tab, use, filename, width, full_page = PAGES[name]
            with chromium(width=width) as page:
                page.goto(f"http://127.0.0.1:{port}/", timeout=WAIT_MS)
                page.get_by_role("tab", name=tab).click()
                use(page)
                page.screenshot(path=str(out / filename), full_page=full_page)
            written.append(out / filename)
            print(f"{name}: {out / filename}")
    finally:
        demo.close()
        if monitor is not None:
            monitor.stop()
    return written


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description="Re-take the README's pictures of the suite in headless Chromium.")
    p.add_argument("--pages", nargs="+", default=list(PAGES), choices=list(PAGES))
    p.add_argument("--out", type=Path, default=Path("docs"))
    p.add_argument("--models", default="embedded")
    p.add_argument("--runs", default="runs", help="run folder the monitor picture watches")
    args = p.parse_args(argv)
    take(args.pages, args.out, args.models, args.runs)


if __name__ == "__main__":
    main()
