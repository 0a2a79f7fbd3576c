"""The one progress display: a tqdm bar on a terminal, plain lines in a log file.

A tqdm bar redraws itself with carriage returns; written to a file (a Snakemake ``log:``, a Slurm
output) it becomes one unreadable line of frames. When the stream is not a terminal,
:class:`Progress` prints instead one ordinary line per ``1/lines`` of the total (and the last
item), e.g. ``vae/elbo: 20/200 epochs (10 %), 6.1 s, loss=-1482 val=-1492 best=3``.

In a Jupyter notebook the bar is tqdm's widget. ``delay`` keeps quick loops silent: nothing is
shown before that many seconds have passed.
"""

from __future__ import annotations

import math
import sys
import time
from typing import IO, Iterable, Iterator


class Progress:
    """Wrap ``iterable``; iterate it as usual, call :meth:`set_postfix` to add values to the line."""

    def __init__(self, iterable: Iterable, total: int | None = None, desc: str = "", unit: str = "it",
                 initial: int = 0, enabled: bool = True, delay: float = 0.0, lines: int = 10,
                 stream: IO[str] | None = None):
        self.iterable = iterable
        if total is None and hasattr(iterable, "__len__"):
            total = initial + len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit, self.delay = total, desc, unit, delay
        self.n = initial
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.postfix: dict[str, object] = {}
        self._start = time.perf_counter()
        self._shown = initial  # the count of the last line printed
        self._step = max(1, math.ceil(total / max(lines, 1))) if total else 100
        self._bar = None
        if enabled and (_is_terminal(self.stream) or (stream is None and "ipykernel" in sys.modules)):
            # a terminal, or a Jupyter notebook (tqdm.auto draws a widget there, not frames)
            from tqdm.auto import tqdm

            self._bar = tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit, delay=delay,
                             dynamic_ncols=True, file=self.stream)

    def __iter__(self) -> Iterator:
        if self._bar is not None:
            yield from self._bar
            return
        try:
            for item in self.iterable:
                self.n += 1  # counted when handed out, so a loop left by `break` counts its last item
                yield item
                if self.enabled and (self.n % self._step == 0 or self.n == self.total):
                    self._line()
        finally:
            self.close()

    def set_postfix(self, **values) -> None:
        """Values shown after the count (formatted by the caller, e.g. ``loss=f"{x:.4g}"``)."""
        self.postfix = values
        if self._bar is not None:
            self._bar.set_postfix(**values)

    def close(self) -> None:
        """Print the last count if it has not been shown (a loop left early: early stopping)."""
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self.n != self._shown:
            self._line()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _line(self) -> None:
        elapsed = time.perf_counter() - self._start
        if elapsed < self.delay:
            return
        self._shown = self.n
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        share = f" ({100 * self.n / self.total:.0f} %)" if self.total else ""
        extra = " ".join(f"{k}={v}" for k, v in self.postfix.items())
        head = f"{self.desc}: " if self.desc else ""
        print(f"{head}{count} {self.unit}{share}, {elapsed:.1f} s" + (f", {extra}" if extra else ""),
              file=self.stream, flush=True)


def progress(iterable: Iterable, total: int | None = None, desc: str = "", unit: str = "it",
             enabled: bool = True, delay: float = 0.0, **kwargs) -> Progress:
    """``for x in progress(xs, desc="...")``: see :class:`Progress`."""
    return Progress(iterable, total=total, desc=desc, unit=unit, enabled=enabled, delay=delay, **kwargs)


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a file
        return False
