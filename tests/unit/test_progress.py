"""circuitgate.progress: a redrawn bar on a terminal, a few plain lines anywhere else."""

from __future__ import annotations

import io
import re

from tqdm import tqdm

from circuitgate.progress import PlainProgress, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_not_a_terminal_iteration_writes_start_quarters_and_done():
    stream = io.StringIO()
    assert not stream.isatty()
    items = list(progress_bar(range(8), desc="recall activations", unit="batch", stream=stream, quiet_for=0))
    assert items == list(range(8))
    lines = _lines(stream)
    assert lines[0] == "recall activations: start (8 batch)"
    assert [re.sub(r"\d+\.\d s", "T s", line) for line in lines[1:4]] == [
        "recall activations: 25% (2 batch of 8 batch, T s)",
        "recall activations: 50% (4 batch of 8 batch, T s)",
        "recall activations: 75% (6 batch of 8 batch, T s)",
    ]
    assert re.fullmatch(r"recall activations: done \(8 batch in \d+\.\d s\)", lines[4])
    assert len(lines) == 5  # no line per step: a CI log stays readable
    assert "\r" not in stream.getvalue()


def test_update_by_bytes_with_unit_scale_context_manager_and_postfix():
    stream = io.StringIO()
    mib = 1 << 20
    with progress_bar(total=4 * mib, desc="hashing weights", unit="B", unit_scale=True, unit_divisor=1024,
                      leave=False, stream=stream, quiet_for=0) as bar:
        bar.update(3 * mib)  # crosses 25% and 50% and 75% at once: one line, the last quarter
        bar.set_postfix(ce="1.25")
        bar.update(mib)
    lines = _lines(stream)
    assert lines[0] == "hashing weights: start (4.00MB)"
    assert lines[1].startswith("hashing weights: 75% (3.00MB of 4.00MB, ")
    assert re.fullmatch(r"hashing weights: done \(4.00MB in \d+\.\d s\) \[ce=1.25\]", lines[2])
    assert len(lines) == 3


def test_a_stage_done_within_the_quiet_time_writes_start_and_done_only():
    stream = io.StringIO()
    assert len(list(progress_bar(range(8), desc="H5 patching", unit="pass", stream=stream))) == 8
    lines = _lines(stream)
    assert lines[0] == "H5 patching: start (8 pass)" and lines[1].startswith("H5 patching: done (8 pass in ")
    assert len(lines) == 2


def test_one_update_to_the_end_writes_no_quarter():
    stream = io.StringIO()
    with progress_bar(total=100, desc="hashing weights", unit="B", unit_scale=True, stream=stream) as bar:
        bar.update(100)
    lines = _lines(stream)
    assert lines[0] == "hashing weights: start (100B)" and lines[1].startswith("hashing weights: done (100B in ")
    assert len(lines) == 2


def test_close_is_idempotent_and_an_unknown_total_writes_start_and_done():
    stream = io.StringIO()
    bar = progress_bar(iter("abc"), desc="organism", unit="step", stream=stream)
    assert list(bar) == ["a", "b", "c"]
    bar.close()
    lines = _lines(stream)
    assert lines[0] == "organism: start" and lines[1].startswith("organism: done (3 step in ") and len(lines) == 2


def test_disabled_writes_nothing_and_still_iterates():
    stream = Terminal()
    bar = progress_bar(range(3), desc="x", enabled=False, stream=stream)
    assert isinstance(bar, PlainProgress) and list(bar) == [0, 1, 2]
    bar.update(5)
    bar.set_postfix(a=1)
    bar.close()
    assert stream.getvalue() == ""


def test_a_terminal_gets_a_tqdm_bar_on_that_stream():
    stream = Terminal()
    bar = progress_bar(range(4), desc="sweep", unit="pass", stream=stream)
    assert isinstance(bar, tqdm)
    assert list(bar) == [0, 1, 2, 3]
    assert "sweep" in stream.getvalue() and "\r" in stream.getvalue()  # drawn in place


def test_stderr_is_read_at_the_call(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    with progress_bar(total=2, desc="patching", unit="pass") as bar:
        bar.update()
        bar.update()
    assert _lines(stream)[0] == "patching: start (2 pass)" and _lines(stream)[-1].startswith("patching: done")


def test_a_note_is_one_line_where_progress_goes_and_nothing_when_disabled():
    from circuitgate.progress import note

    stream = io.StringIO()
    note("H5 plan: 3 targets", stream=stream)
    note("not shown", enabled=False, stream=stream)
    assert stream.getvalue() == "H5 plan: 3 targets\n"
