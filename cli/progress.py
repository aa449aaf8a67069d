"""A one-line progress bar on stderr, for ``bilevel watch`` and ``bilevel run``."""

from __future__ import annotations

import sys
import time

__all__ = ["Bar"]


class Bar:
    """A one-line progress bar on stderr: redrawn in place on a terminal, a line per 5% in a
    log."""

    def __init__(self, total: int, width: int = 30):
        self.total, self.width, self.tty = max(total, 1), width, sys.stderr.isatty()
        self.last, self.shown_at, self.step = "", 0.0, -1

    def show(self, done: int, text: str = "") -> None:
        frac = min(done / self.total, 1.0)
        # a terminal redraws at most 10 times a second; a log gets a line per 5%
        now, step = time.monotonic(), int(frac * 20)
        if done < self.total and (
            (self.tty and now - self.shown_at < 0.1) or (not self.tty and step == self.step)
        ):
            return
        self.shown_at, self.step = now, step
        bar = "#" * int(frac * self.width)
        line = f"[{bar:<{self.width}}] {done}/{self.total} {text}"
        if line != self.last:
            sys.stderr.write(("\r" if self.tty else "") + line + ("" if self.tty else "\n"))
            sys.stderr.flush()
            self.last = line

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
