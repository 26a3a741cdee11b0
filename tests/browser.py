"""A real browser for circuitgate's own tests: Debian's chromium, installed on first use, and the check
that a report renders every plot (opened in headless Chromium, a screenshot saved)."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from circuitgate.report.plots import REASONING, RECALL

IMG = re.compile(r"<img\b[^>]*>")


def find_or_install_chromium() -> tuple[str | None, str]:
    """Debian's chromium: the one on PATH, else installed with apt-get (after an update when the install
    fails, e.g. on a fresh machine without package lists). (path, "") or (None, why not)."""
    found = shutil.which("chromium")
    if found:
        return found, ""
    # Another test session may be installing too: wait for dpkg's lock rather than fail on it.
    apt = [*([] if os.geteuid() == 0 else ["sudo", "-n"]), "apt-get", "-qq", "-o", "DPkg::Lock::Timeout=600"]
    install = [*apt, "install", "-y", "--no-install-recommends", "chromium"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    error = ""
    for attempt in ([], [*apt, "update"]):
        try:
            if attempt:
                subprocess.run(attempt, env=env, capture_output=True, timeout=600)
            proc = subprocess.run(install, env=env, capture_output=True, text=True, timeout=1200)
        except (OSError, subprocess.TimeoutExpired) as e:
            error = str(e)
            continue
        error = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        if proc.returncode == 0 and shutil.which("chromium"):
            return shutil.which("chromium"), ""
    return None, f"`{' '.join(install)}`: {error}"


# Injected into a copy of the page: on load, how many images decoded, and where the last one ends (the
# screenshot's height: the verdicts and the plots, not a 7B model's tables of 1,700 components).
PROBE = ("<script>addEventListener('load', () => {const imgs = [...document.images];"
         "document.body.dataset.decoded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;"
         "document.body.dataset.height = Math.ceil(Math.max(...imgs.map(i => i.getBoundingClientRect().bottom)) + 40);"
         "});</script></body>")


def _browse(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def decode(png: bytes) -> np.ndarray:
    """The PNG's pixels, height x width x RGB, uint8."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


def colour_pixels(rgb: np.ndarray, colour: str, tolerance: int = 12) -> int:
    """How many pixels lie within ``tolerance`` (0-255 per channel) of a #rrggbb colour."""
    target = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)
    return int((np.abs(rgb.astype(np.int16) - target) <= tolerance).all(axis=-1).sum())


def assert_renders_every_plot(chromium: str, html: str, directory: Path) -> Path:
    """Open the page in headless chromium: every <img> must decode, and a screenshot down to the last
    plot must show the recall and reasoning colours. Returns the screenshot's path (kept for a human)."""
    n_plots = len(IMG.findall(html))
    page = directory / "report.html"
    page.write_text(html)
    probe = directory / "probe.html"
    probe.write_text(html.replace("</body>", PROBE))
    proc = _browse(chromium, directory / "profile", "--window-size=1400,1000", "--dump-dom", probe.as_uri())
    decoded = re.search(r'data-decoded="(\d+)"', proc.stdout)
    height = re.search(r'data-height="(\d+)"', proc.stdout)
    assert decoded and height, f"chromium gave no DOM (exit {proc.returncode}): {proc.stderr[-500:]}"
    assert int(decoded[1]) == n_plots

    shot = directory / "report.png"
    proc = _browse(chromium, directory / "profile", f"--window-size=1400,{height[1]}", f"--screenshot={shot}",
                   page.as_uri())
    assert shot.is_file(), f"no screenshot (exit {proc.returncode}): {proc.stderr[-500:]}"
    rgb = decode(shot.read_bytes())
    seen = {colour: colour_pixels(rgb, colour) for colour in (RECALL, REASONING)}
    assert rgb.shape[:2] == (int(height[1]), 1400) and min(seen.values()) > 1000, f"look at {shot}: {seen}"
    return shot
