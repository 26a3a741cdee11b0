"""Progress of long work (an organism build, extraction, ablation sweeps, hashing weights).

On a terminal, a tqdm bar that redraws in place. Anywhere else (a CI log, a file, pytest's capture) a
redrawn bar is hundreds of carriage-return frames on one line, so the same calls write a few plain
lines instead: one at the start, one at every quarter crossed once the stage has run for
``QUIET_SECONDS`` (a stage done sooner needs none: the organism run has some twenty stages under a
second each), one at the end with the elapsed seconds.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator, TextIO

QUARTERS = (25, 50, 75)
QUIET_SECONDS = 2.0


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
                 enabled: bool = True, leave: bool = True, unit_scale: bool = False, unit_divisor: int = 1000,
                 stream: TextIO | None = None, quiet_for: float = QUIET_SECONDS) -> Any:
    """A progress bar over ``iterable`` (or updated by hand with ``update(n)``), with tqdm's interface
    as circuitgate uses it: iteration, ``update(n)``, ``set_postfix(**values)``, ``close()`` and use as a
    context manager. ``stream`` defaults to ``sys.stderr`` as it is at the call (pytest swaps it)."""
    stream = sys.stderr if stream is None else stream
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if enabled and _is_terminal(stream):
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, unit_scale=unit_scale,
                    unit_divisor=unit_divisor, file=stream)
    return PlainProgress(iterable, total=total, desc=desc, unit=unit, unit_scale=unit_scale,
                         unit_divisor=unit_divisor, stream=stream if enabled else None, quiet_for=quiet_for)


def note(text: str, *, enabled: bool = True, stream: TextIO | None = None) -> None:
    """One line about long work about to start (H5's plan), written where progress goes: ``stream``,
    default ``sys.stderr`` as it is at the call."""
    if enabled:
        stream = sys.stderr if stream is None else stream
        stream.write(f"{text}\n")
        stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class PlainProgress:
    """tqdm's interface, writing whole lines: start, each quarter crossed after ``quiet_for`` seconds,
    done. ``stream=None``: silent."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", unit_scale: bool = False, unit_divisor: int = 1000,
                 stream: TextIO | None = None, quiet_for: float = QUIET_SECONDS) -> None:
        self.iterable, self.total, self.n = iterable, total, 0
        self.quiet_for = quiet_for
        self.desc, self.unit, self.unit_scale, self.unit_divisor = desc or "progress", unit, unit_scale, unit_divisor
        self.stream = stream
        self.postfix = ""
        self._quarters = list(QUARTERS)
        self._closed = False
        self._start = time.monotonic()
        self._write(f"start ({self._amount(total)})" if total else "start")

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("PlainProgress without an iterable is updated with update(n), not iterated")
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()  # as tqdm does when its iterable is exhausted

    def update(self, n: int = 1) -> None:
        self.n += n
        if not self.total:
            return
        percent = 100 * self.n / self.total
        crossed = [q for q in self._quarters if percent >= q]
        self._quarters = [q for q in self._quarters if q not in crossed]
        if crossed and self.n < self.total and self._elapsed() >= self.quiet_for:  # at the end, done says it
            self._write(f"{crossed[-1]}% ({self._amount(self.n)} of {self._amount(self.total)}, "
                        f"{self._elapsed():.1f} s)")

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **values: Any) -> None:
        values = {**(ordered_dict or {}), **values}
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._write(f"done ({self._amount(self.n)} in {self._elapsed():.1f} s)")

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _elapsed(self) -> float:
        return time.monotonic() - self._start

    def _amount(self, n: float | None) -> str:
        if self.unit_scale:
            from tqdm import tqdm

            return tqdm.format_sizeof(n, self.unit, self.unit_divisor)  # 1.50MB, as the bar shows it
        return f"{n} {self.unit}"

    def _write(self, text: str) -> None:
        if self.stream is None:
            return
        postfix = f" [{self.postfix}]" if self.postfix else ""
        self.stream.write(f"{self.desc}: {text}{postfix}\n")
        self.stream.flush()
