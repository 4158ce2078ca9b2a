"""Opening a report in headless Chromium: check that every image loads, take a screenshot.

The page itself marks each image once the window has loaded (``data-loaded="1"`` when
``naturalWidth > 0``) and records the counts and the page height on ``<body>``; here the DOM
is dumped after the load and those marks are read back.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--disable-dev-shm-usage", "--mute-audio"]


class BrowserError(RuntimeError):
    pass


def find_chromium() -> str | None:
    """The Chromium (or Chrome) executable: ``$STABILITY_CHROMIUM`` or the first on PATH."""
    env = os.environ.get("STABILITY_CHROMIUM")
    if env:
        return env if shutil.which(env) or Path(env).exists() else None
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    exe = find_chromium()
    if exe is None:
        raise BrowserError("no Chromium found (install Debian's `chromium`, or set STABILITY_CHROMIUM)")
    with tempfile.TemporaryDirectory(prefix="stability-chromium-") as profile:
        cmd = [exe, *FLAGS, f"--user-data-dir={profile}", *args]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise BrowserError(f"Chromium did not finish within {timeout:g} s") from exc


def dump_dom(html_path: str | os.PathLike, budget_ms: int = 5000, timeout: float = 60.0, width: int = 1400,
             height: int = 1000) -> str:
    """The page's DOM after it loaded and its scripts ran (in a window of width × height)."""
    url = Path(html_path).resolve().as_uri()
    out = _run(["--dump-dom", f"--window-size={width},{height}", f"--virtual-time-budget={budget_ms}", url], timeout)
    if out.returncode != 0 or "<html" not in out.stdout.lower():
        raise BrowserError(f"Chromium could not render {url} (exit {out.returncode}): {out.stderr[-2000:]}")
    return out.stdout


def image_check(html_path: str | os.PathLike, width: int = 1400) -> dict:
    """{"total", "loaded", "broken": [src...], "height"} as the page's own script saw them
    (``height``: the page's full height in a window ``width`` pixels wide)."""
    dom = dump_dom(html_path, width=width)
    body = re.search(r"<body([^>]*)>", dom)
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1))) if body else {}
    if "images-total" not in attrs:
        raise BrowserError("the page's image check did not run (no data-images-total on <body>)")
    broken = []
    for tag in re.findall(r"<img\b[^>]*>", dom):
        if 'data-loaded="1"' not in tag:
            m = re.search(r'src="([^"]*)"', tag)
            broken.append(m.group(1) if m else tag)
    return {"total": int(attrs["images-total"]), "loaded": int(attrs.get("images-loaded", 0)), "broken": broken,
            "height": int(float(attrs.get("page-height", 0) or 0))}


def screenshot(index_html: str | os.PathLike, png_path: str | os.PathLike, width: int = 1400,
               height: int | None = None, max_height: int = 16000, palette: bool = True) -> Path:
    """A full-page PNG of the report (height measured by the page unless given); with
    ``palette`` (and Pillow) stored with 256 colors, a third of the size, for checking in."""
    png_path = Path(png_path).resolve()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    if height is None:
        height = image_check(index_html, width=width)["height"] or 2000
    height = max(600, min(int(height) + 20, max_height))
    url = Path(index_html).resolve().as_uri()
    out = _run([f"--screenshot={png_path}", f"--window-size={width},{height}", "--virtual-time-budget=5000", url],
               timeout=90.0)
    if out.returncode != 0 or not png_path.exists() or png_path.stat().st_size == 0:
        raise BrowserError(f"Chromium could not take a screenshot of {url} (exit {out.returncode}): "
                           f"{out.stderr[-2000:]}")
    try:
        from PIL import Image

        with Image.open(png_path) as im:
            im.load()
        im = im.convert("RGB")
        if palette:
            im = im.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        im.save(png_path, optimize=True)
    except Exception:  # noqa: BLE001 - Pillow is optional; the screenshot is already there
        pass
    return png_path
