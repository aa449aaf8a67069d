"""A worker's bounded on-disk cache of data set files, keyed and verified by SHA-256.

Jobs name a data set by id; its bytes are chunks in the store (``jobs.store.repo.datasets``). The
first job on a worker fetches them into ``<dir>/<sha256>`` (through a temporary file renamed
into place once its digest matches, so a crash leaves no half file under the key). Every
later use hashes the file again before trusting it: a corrupted or truncated cache entry is
dropped and fetched anew, never loaded. Past ``max_bytes`` the least recently used files go.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CacheRead", "DatasetCache"]

log = logging.getLogger(__name__)
_READ = 1 << 20


@dataclass(frozen=True)
class CacheRead:
    """Where a file is, and how it got there: ``hit`` (verified copy) or ``miss`` (fetched)."""

    path: Path
    hit: bool


class DatasetCache:
    """Files by SHA-256 under ``directory``, at most ``max_bytes`` of them kept between jobs.

    Args:
        directory: created on first use.
        max_bytes: the budget; a single file larger than it is still kept until the next
            fetch (the job needs it), then evicted like any other.
    """

    def __init__(self, directory: Path, max_bytes: int):
        self.directory, self.max_bytes = Path(directory), max_bytes

    def get(self, sha256: str, fetch: Callable[[], Iterator[bytes]]) -> CacheRead:
        """The verified file of ``sha256``, fetched with ``fetch()`` when absent or corrupt.

        Raises:
            ValueError: the fetched bytes do not hash to ``sha256``.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / sha256
        if path.exists():
            if _digest(path) == sha256:
                os.utime(path)  # most recently used
                return CacheRead(path, hit=True)
            log.warning("dataset cache: %s does not match its digest; fetching it again", path)
            path.unlink(missing_ok=True)
        tmp = self.directory / f".{sha256}.{os.getpid()}.part"
        h = hashlib.sha256()
        try:
            with tmp.open("wb") as f:
                for block in fetch():
                    h.update(block)
                    f.write(block)
            if h.hexdigest() != sha256:
                raise ValueError(
                    f"fetched data set file hashes to {h.hexdigest()}, expected {sha256}"
                )
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        self._evict(keep=path)
        return CacheRead(path, hit=False)

    def _evict(self, keep: Path) -> None:
        files = [p for p in self.directory.iterdir() if p.is_file() and not p.name.startswith(".")]
        files.sort(key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        for p in files:
            if total <= self.max_bytes:
                break
            if p != keep:
                total -= p.stat().st_size
                p.unlink(missing_ok=True)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_READ):
            h.update(block)
    return h.hexdigest()
