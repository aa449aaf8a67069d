"""What every reproduction shares: a progress bar, markdown tables, figure files."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

REPO = Path(__file__).resolve().parents[1]


def default_data_dir(configured: str | None) -> Path:
    """The data directory a reproduction reads when ``--data-dir`` is not given.

    ``configured`` is the caller's setting (``$BILEVEL_DATA_DIR`` for ``bilevel reproduce``,
    see :func:`experiments.data_dir_setting`); this module reads no environment itself.
    Empty or ``None`` means ``../shared/data`` beside the checkout.
    """
    return Path(configured) if configured else REPO.parent / "shared" / "data"


class Progress:
    """A text progress bar on stderr: redrawn in place on a terminal, one line per step else."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None, width: int = 30):
        self.total, self.label, self.width = total, label, width
        self.stream = stream or sys.stderr
        self.done = 0
        self.tty = self.stream.isatty()

    def step(self, what: str) -> None:
        """Announce the next unit of work."""
        self.done += 1
        filled = round(self.width * (self.done - 1) / self.total)
        bar = "#" * filled + "." * (self.width - filled)
        line = f"{self.label} [{bar}] {self.done}/{self.total} {what}"
        if self.tty:
            self.stream.write("\r" + line.ljust(79))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Finish the bar."""
        if self.tty:
            self.stream.write("\r" + f"{self.label} [{'#' * self.width}] done".ljust(79) + "\n")
            self.stream.flush()


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def savefig(fig: Any, path: Path) -> None:
    """Write a matplotlib figure as PNG and free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
