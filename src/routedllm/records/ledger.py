"""The JSONL ledger: one CallRecord per line, appended safely by many threads and processes.

Each record is written as one full line with a single ``os.write`` on a file opened for
append, under a thread lock and (on POSIX) an exclusive ``flock``. A writer that died
mid-line leaves a torn tail; the next writer cuts it off before appending, so a broken
line is never followed by a good one. The reader skips, and warns about, a torn last line.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from routedllm.core.errors import RoutedLLMError
from routedllm.records.schema import CallRecord

try:  # POSIX advisory locks; without them only threads of one process are serialised
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_TAIL_CHUNK = 64 * 1024


class LedgerError(RoutedLLMError, ValueError):
    """A ledger line is not a CallRecord; the message names the file and line."""


class LedgerWarning(UserWarning):
    """A ledger had a torn (truncated) last line, which was skipped or cut off."""


class JsonlLedger:
    """A sink that appends each CallRecord as one JSON line to ``path``.

    Safe for concurrent writers: threads share this object or not, processes each open
    their own. The file is opened per write, so it also survives ``fork`` and log rotation.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"JsonlLedger({str(self.path)!r})"

    def emit(self, record: CallRecord) -> None:
        line = record.model_dump_json().encode("utf-8") + b"\n"
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    _cut_torn_tail(fd, self.path)
                written = os.write(fd, line)
                while written < len(line):  # only on a full disk or a signal; keep the line whole
                    written += os.write(fd, line[written:])
            finally:
                os.close(fd)  # closing releases the flock


def _cut_torn_tail(fd: int, path: Path) -> None:
    """Truncate a last line that lacks its newline (a writer died mid-write). Needs the flock."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    end = size
    keep = 0
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            break
        end = start
    os.ftruncate(fd, keep)
    warnings.warn(
        f"{path}: cut off a truncated last line ({size - keep} bytes) left by a "
        "writer that stopped mid-write",
        LedgerWarning,
        stacklevel=4,
    )


def iter_ledger(path: str | os.PathLike[str]) -> Iterator[CallRecord]:
    """Yield the records of a ledger file in order.

    A last line without its newline is a torn write: it is skipped with a
    :class:`LedgerWarning`. Any other bad line raises :class:`LedgerError`, since it means
    the file is not a routedllm ledger or was edited. Blank lines are ignored.
    """
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.endswith(b"\n"):
                warnings.warn(
                    f"{path}: skipped a truncated last line {lineno} ({len(line)} "
                    "bytes): a writer stopped mid-write",
                    LedgerWarning,
                    stacklevel=2,
                )
                return
            if not line.strip():
                continue
            try:
                yield CallRecord.model_validate_json(line)
            except ValidationError as exc:
                problem = exc.errors()[0]
                where = ".".join(str(p) for p in problem["loc"]) or "line"
                raise LedgerError(
                    f"{path}:{lineno}: not a CallRecord ({where}: {problem['msg']})"
                ) from None


def read_ledger(path: str | os.PathLike[str]) -> list[CallRecord]:
    """All records of a ledger file (see :func:`iter_ledger` for what is skipped)."""
    return list(iter_ledger(path))
