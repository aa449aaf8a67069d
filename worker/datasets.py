"""Arrays of a job's data set: a team's upload (through the cache) or a built-in table."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

import core
from jobs import repo
from jobs.datasets.files import read_arrays
from jobs.kinds.tables import BUILTIN_TABLES
from worker.dataset_cache import DatasetCache

__all__ = ["DatasetSource", "builtin_table", "load_file"]

Arrays = dict[str, np.ndarray]


def builtin_table(name: str, seed: int = 0) -> Arrays:
    """scikit-learn's bundled ``digits``, ``diabetes`` or ``breast_cancer``, split 60/20/20.

    The split is drawn with ``seed``; digits' pixels are scaled to ``[0, 1]``; diabetes
    also has a task column ``task_<split>``, the patients' sex (0 or 1).

    Raises:
        core.ConfigurationError: an unknown name.
    """
    from sklearn import datasets

    loaders = {
        "digits": datasets.load_digits,
        "diabetes": datasets.load_diabetes,
        "breast_cancer": datasets.load_breast_cancer,
    }
    if name not in loaders:
        raise core.ConfigurationError(
            f"dataset must be one of {BUILTIN_TABLES} or an id, got {name!r}"
        )
    bunch = loaders[name]()
    x = np.asarray(bunch.data, dtype=np.float64) / (16.0 if name == "digits" else 1.0)
    y = np.asarray(bunch.target)
    y = y.astype(np.float64) if name == "diabetes" else y.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    a, b = int(0.6 * len(y)), int(0.8 * len(y))
    parts = {"train": order[:a], "val": order[a:b], "test": order[b:]}
    out: Arrays = {}
    for split, idx in parts.items():
        out[f"x_{split}"], out[f"y_{split}"] = x[idx], y[idx]
        if name == "diabetes":  # a task column for task_interaction: the patients' sex
            out[f"task_{split}"] = (x[idx, 1] > 0).astype(np.int64)
    return out


def load_file(path: Path) -> Arrays:
    """The arrays of a validated ``.npz`` or ``.safetensors`` file (never unpickling)."""
    with path.open("rb") as f:
        zipped = f.read(2) == b"PK"
    if zipped:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    arrays: Arrays = {}
    for info, chunks in read_arrays(path):
        data = b"".join(chunks)
        arrays[info.name] = np.frombuffer(data, dtype=np.dtype(info.dtype).newbyteorder("<"))
        arrays[info.name] = arrays[info.name].reshape(info.shape)
    return arrays


@dataclass
class DatasetSource:
    """Resolves a spec's ``problem.dataset`` for one job of one team.

    Attributes:
        sessions: the store.
        team_id: the job's team: a data set of another team is not found.
        cache: the worker's file cache.
        seed: splits the built-in tables.
        cache_hit: after a call on an upload, whether its file came from the cache.
    """

    sessions: sessionmaker[Session] | None
    team_id: uuid.UUID | None
    cache: DatasetCache | None
    seed: int = 0
    cache_hit: bool | None = None

    def __call__(self, ref: str) -> Arrays:
        """The arrays of ``ref``: a built-in table's name or the team's data set id.

        Raises:
            core.ConfigurationError: no such data set for this team.
        """
        if ref in BUILTIN_TABLES:
            return builtin_table(ref, self.seed)
        if self.sessions is None or self.cache is None:
            raise core.ConfigurationError(f"dataset {ref!r} needs the job store (a service job)")
        sessions = self.sessions
        with sessions() as s:
            row = repo.get_dataset(s, self.team_id, uuid.UUID(ref))
            if row is None:
                raise core.ConfigurationError(f"no dataset {ref} for this job's team")
            sha = row.sha256

        def fetch() -> Any:
            with sessions() as s:
                yield from repo.read_dataset_chunks(s, sha)

        read = self.cache.get(sha, fetch)
        self.cache_hit = read.hit
        return load_file(read.path)


Resolver = Callable[[str], Arrays]
