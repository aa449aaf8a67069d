"""Progress bars: tqdm's when it is installed, else one line on stderr.

``tqdm.auto`` draws a widget in a notebook; without tqdm, :class:`Bar` redraws one line in
place on a terminal and writes a line per 5% in a log.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol

__all__ = ["Bar", "ProgressBar", "progress_bar"]


class ProgressBar(Protocol):
    """What the client's loops need of a bar."""

    def show(self, done: int, text: str = "") -> None:
        """Draw ``done`` steps of the total, with ``text`` after the bar."""

    def close(self) -> None:
        """End the bar (a terminal's line is finished)."""


class Bar:
    """A one-line progress bar on stderr: redrawn in place on a terminal, a line per 5% in a log.

    Args:
        total: the number of steps.
        width: the bar's width in characters.
    """

    def __init__(self, total: int, width: int = 30):
        self.total, self.width, self.tty = max(total, 1), width, sys.stderr.isatty()
        self.last, self.shown_at, self.step = "", 0.0, -1

    def show(self, done: int, text: str = "") -> None:
        """Draw ``done`` steps of the total, with ``text`` after the bar."""
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
        """End the bar (a terminal's line is finished)."""
        if self.tty:
            sys.stderr.write("\n")


class _Tqdm:
    """tqdm behind :class:`ProgressBar`'s two methods."""

    def __init__(self, bar: Any):
        self.bar = bar

    def show(self, done: int, text: str = "") -> None:
        self.bar.n = done
        if text:
            self.bar.set_postfix_str(text, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


class _Off:
    def show(self, done: int, text: str = "") -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(
    total: int, desc: str = "", *, enabled: bool = True, **tqdm_kw: Any
) -> ProgressBar:
    """A bar over ``total`` steps: tqdm's when tqdm is installed, else :class:`Bar`.

    Args:
        total: the number of steps (iterations, members, bytes).
        desc: the bar's label.
        enabled: ``False`` gives a bar that shows nothing.
        tqdm_kw: more arguments for ``tqdm`` (``unit="B"``, ``unit_scale=True``).
    """
    if not enabled:
        return _Off()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return Bar(total)
    return _Tqdm(tqdm(total=max(total, 1), desc=desc, **tqdm_kw))
