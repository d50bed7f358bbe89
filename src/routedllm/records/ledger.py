"""The JSONL ledger: one CallRecord per line, appended safely by many threads and processes.

Each record is written as one full line with a single ``os.write`` on a file opened for
append, under a thread lock and (on POSIX) an exclusive ``flock``; the file stays open
between writes. A writer that died
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
    their own. The file stays open between writes; each write still takes the ``flock``
    and checks that ``path`` names the open file, so a rotated or deleted ledger is
    reopened, and a forked child opens its own. ``close()`` (or ``with``) releases it.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fspath = os.fspath(self.path)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0  # the process that opened _fd: a forked child must not share its lock
        self._file_id = (0, 0)  # (st_dev, st_ino) of _fd
        self._end = -1  # the file's size after this object's last write, -1: not known

    def __repr__(self) -> str:
        return f"JsonlLedger({str(self.path)!r})"

    def __enter__(self) -> JsonlLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Close the file; the next ``emit`` opens it again."""
        lock = getattr(self, "_lock", None)  # absent when __init__ failed
        if lock is None:
            return
        with lock:
            self._close()

    def emit(self, record: CallRecord) -> None:
        # the model's own serializer: model_dump_json's bytes, without a decode and re-encode
        line = CallRecord.__pydantic_serializer__.to_json(record) + b"\n"
        with self._lock:
            fd, size = self._locked_fd()
            try:
                written = os.write(fd, line)
                while written < len(line):  # only on a full disk or a signal; keep the line whole
                    written += os.write(fd, line[written:])
                self._end = size + len(line)
            finally:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)

    def _locked_fd(self) -> tuple[int, int]:
        """The open ledger, flocked, its torn tail cut off, and its size (-1 without flock).

        Reopened when ``path`` no longer names it (rotated, deleted) or when this is a forked
        child, whose inherited descriptor shares the parent's lock. Needs ``self._lock``.
        """
        if self._fd is not None and self._pid != os.getpid():
            self._close()
        while True:
            if self._fd is None:
                self._open()
            fd = self._fd
            assert fd is not None
            if fcntl is None:
                return fd, -1
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                st = os.stat(self._fspath)
            except FileNotFoundError:
                st = None
            if st is not None and (st.st_dev, st.st_ino) == self._file_id:
                size = st.st_size
                if size != self._end:  # another writer was here since (or this is the first)
                    size = _cut_torn_tail(fd, self.path, size)
                return fd, size
            fcntl.flock(fd, fcntl.LOCK_UN)
            self._close()  # path names another file now, or none: open (or create) that

    def _open(self) -> None:
        fd = os.open(self._fspath, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        st = os.fstat(fd)
        self._fd, self._pid, self._file_id, self._end = fd, os.getpid(), (st.st_dev, st.st_ino), -1

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # in a forked child this closes its copy only; the parent's lock stays


def _cut_torn_tail(fd: int, path: Path, size: int) -> int:
    """Truncate a last line that lacks its newline (a writer died mid-write); returns the
    size after. Needs the flock."""
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
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
        stacklevel=5,
    )
    return keep


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
