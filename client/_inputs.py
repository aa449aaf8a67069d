"""What the clients accept as a data set, and how a study's table becomes a DataFrame."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from client._optional import need
from client.arrays import npz_bytes, split_frame
from client.models import Job, Study
from client.progress import ProgressBar, progress_bar

__all__ = ["DatasetBody", "dataset_body", "study_frame", "wait_text"]

_CHUNK = 1 << 20


class DatasetBody:
    """A data set's bytes ready to send: its name, size, and a fresh stream per attempt.

    A file is read from disk in 1 MiB blocks, never whole in memory.
    """

    def __init__(self, name: str, size: int, chunks: Callable[[], Iterable[bytes]]):
        self.name, self.size, self._chunks = name, size, chunks
        self.bar: ProgressBar | None = None

    def stream(self) -> Iterator[bytes]:
        done = 0
        for block in self._chunks():
            done += len(block)
            if self.bar is not None:
                self.bar.show(done)
            yield block

    def with_bar(self, progress: bool | ProgressBar) -> DatasetBody:
        """Show the bytes sent on ``progress``: a bar of the caller's, a new one, or none."""
        if isinstance(progress, bool):
            progress = progress_bar(self.size, f"upload {self.name}", enabled=progress,
                                    unit="B", unit_scale=True)  # fmt: skip
        self.bar = progress
        return self


def _file_blocks(path: Path) -> Callable[[], Iterator[bytes]]:
    def blocks() -> Iterator[bytes]:
        with path.open("rb") as f:
            while block := f.read(_CHUNK):
                yield block

    return blocks


def dataset_body(source: Any, name: str | None, split: Mapping[str, Any]) -> DatasetBody:
    """A data set from a file path, a mapping of arrays or a ``pandas.DataFrame``.

    Args:
        source: a ``.npz`` or ``.safetensors`` path; or arrays by name (``x_train``,
            ``y_train``, ``x_val``, ``y_val``, ...); or a DataFrame (split with
            :func:`client.arrays.split_frame` and ``split``'s arguments).
        name: the data set's name; by default the file's stem, else ``"dataset"``.
        split: ``target``, ``val``, ``test``, ``seed`` for a DataFrame.

    Raises:
        ValueError: a DataFrame without ``target``, or a source of another type.
        OSError: the file cannot be read.
    """
    if isinstance(source, str | Path):
        path = Path(source)
        size = path.stat().st_size
        return DatasetBody(name or path.stem, size, _file_blocks(path))
    if hasattr(source, "columns") and hasattr(source, "to_numpy"):
        if not split.get("target"):
            raise ValueError("a DataFrame needs target=: the column to predict")
        source = split_frame(source, **split)
    if not isinstance(source, Mapping):
        raise ValueError(
            f"a data set is a file path, a mapping of arrays or a DataFrame, got "
            f"{type(source).__name__}"
        )
    data = npz_bytes(source)
    return DatasetBody(name or "dataset", len(data), lambda: [data])


def wait_text(job: Job) -> str:
    """The progress bar's text while waiting on a job: status, loss, time left."""
    loss = (job.summary or {}).get("final_outer_loss")
    eta = job.progress.eta_s
    return (
        f"{job.status}"
        + (f" loss {loss:.4g}" if isinstance(loss, int | float) else "")
        + (f" eta {eta:.0f}s" if eta else "")
    )


def study_frame(study: Study) -> Any:
    """A study's aggregate table as a ``pandas.DataFrame``.

    One row per setting of its ``group_by`` paths (the index); per metric its mean (column
    ``<metric>``) and sample standard deviation (``<metric>_std``) over the row's succeeded
    members, and the row's ``members`` and ``succeeded`` counts.
    """
    pd = need("pandas", "Study table")
    records = []
    for row in study.table or []:
        rec: dict[str, Any] = {p: row.values.get(p) for p in study.group_by}
        rec["members"], rec["succeeded"] = row.members, row.succeeded
        for metric, stat in row.stats.items():
            rec[metric], rec[f"{metric}_std"] = stat.mean, stat.std
        records.append(rec)
    frame = pd.DataFrame.from_records(records)
    return frame.set_index(study.group_by) if study.group_by and records else frame
