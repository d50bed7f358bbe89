"""The JSONL ledger: one CallRecord per line, appended safely by many threads and processes.

Each record is written as one full line with a single ``os.write`` on a file opened for
append, under a thread lock and (on POSIX) an exclusive ``flock``; the file stays open
between writes. A writer that died mid-line leaves a torn tail; the next writer cuts it
off before appending, so a broken line is never followed by a good one. The reader skips,
and warns about, a torn last line; it reads regular files only (a FIFO would block it)
and reads at most ``MAX_LINE_BYTES`` of a line, so a huge line cannot exhaust memory.
"""

from __future__ import annotations

import io
import os
import stat
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from routedllm.core.errors import RoutedLLMError
from routedllm.core.files import kind_of
from routedllm.records.schema import CallRecord

try:  # POSIX advisory locks; without them only threads of one process are serialised
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # POSIX: a FIFO cannot block the open
_TAIL_CHUNK = 64 * 1024
_READ_BLOCK = 1024 * 1024
MAX_LINE_BYTES = 1024 * 1024
"""The longest line a reader takes; a record is ~1 KB (error texts are clipped to 500
characters), so a longer line is not one a ledger writer wrote."""


class LedgerError(RoutedLLMError, ValueError):
    """A ledger cannot be read or written as one (not a regular file, no permission), or
    a line is not a CallRecord; the message names the file (and line)."""


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
        """Raises :class:`LedgerError` now, not at the first record, when ``path`` cannot be
        written: its directory is missing or not writable, or it names a directory, a FIFO,
        a device or a file this process may not write."""
        self.path = Path(path)
        self._fspath = os.fspath(self.path)
        _check_writable(self.path)
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
        try:
            self.close()
        except Exception:  # noqa: BLE001 - at interpreter exit, os may be gone already
            pass

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
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | _NONBLOCK
        fd = os.open(self._fspath, flags, 0o644)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped for a FIFO or device since construction
            os.close(fd)
            raise LedgerError(
                _not_writable(self.path, f"{kind_of(st.st_mode)}, not a regular file")
            )
        if _NONBLOCK:
            os.set_blocking(fd, True)
        self._fd, self._pid, self._file_id, self._end = fd, os.getpid(), (st.st_dev, st.st_ino), -1

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # in a forked child this closes its copy only; the parent's lock stays


def _not_writable(path: Path, why: str) -> str:
    return f"{_shown(path)}: cannot write the ledger: {why}; give the path of a JSONL file"


def _check_writable(path: Path) -> None:
    """Raise LedgerError when records could not be appended to ``path``. An existing file is
    opened for append (and closed) without blocking or creating anything; for a new one, its
    directory must exist and be writable."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        parent = path.absolute().parent
        if not parent.is_dir():
            raise LedgerError(
                _not_writable(path, f"directory {_shown(parent)} does not exist (create it)")
            ) from None
        if not os.access(parent, os.W_OK | os.X_OK):
            raise LedgerError(
                _not_writable(path, f"no permission to create files in {_shown(parent)}")
            ) from None
        return
    except OSError as exc:
        raise LedgerError(_not_writable(path, str(exc.strerror))) from None
    if not stat.S_ISREG(st.st_mode):
        raise LedgerError(_not_writable(path, f"{kind_of(st.st_mode)}, not a regular file"))
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | _NONBLOCK))
    except OSError as exc:
        raise LedgerError(_not_writable(path, str(exc.strerror))) from None


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


def iter_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, bytes | None]]:
    """Yield ``(line number, line)`` for each non-blank line of a ledger file, newline
    stripped; ``line`` is None for a line longer than :data:`MAX_LINE_BYTES` (its bytes
    are read past, never held). See :func:`iter_blocks` for what is refused and warned.
    """
    for first, lines in iter_blocks(path):
        for lineno, line in enumerate(lines, start=first):
            if line is None or (line and not line.isspace()):
                yield lineno, line


def iter_blocks(
    path: str | os.PathLike[str], *, newlines: bool = False
) -> Iterator[tuple[int, list[bytes | None]]]:
    """Yield ``(number of the first line, lines)`` a block of the file at a time: every
    line, blank ones too, newline stripped (kept with ``newlines=True``, which saves a copy
    of each line: the report's reader); None for a line longer than
    :data:`MAX_LINE_BYTES`, whose bytes are read past, never held.

    Memory stays bounded whatever the file's size. A last line without its newline is a
    torn write: skipped with a :class:`LedgerWarning`. Raises :class:`LedgerError` when
    ``path`` is not a regular file (a FIFO, a device, a directory), before reading from it;
    OSError when it cannot be opened.
    """
    lineno = 1  # of the next line to yield
    head = b""  # the start of the current line, read in an earlier block
    overlong = False  # the current line passed MAX_LINE_BYTES: its bytes are dropped
    longest = MAX_LINE_BYTES + newlines  # with its newline
    with _open_regular(path) as f:
        while block := f.read(_READ_BLOCK):
            if newlines:  # readlines finds newlines with memchr: about twice as fast as split
                parts = io.BytesIO(block).readlines()
                rest = parts.pop() if parts[-1][-1:] != b"\n" else b""
            else:
                parts = block.split(b"\n")
                rest = parts.pop()  # the start of a line that a later block ends
            if parts:
                if head:
                    parts[0], head = head + parts[0], b""
                lines: list[bytes | None] = list(parts)
                if max(map(len, parts)) > longest:
                    lines = [None if len(p) > longest else p for p in parts]
                if overlong:  # the end of a line already too long
                    lines[0], overlong = None, False
                yield lineno, lines
                lineno += len(lines)
            if overlong or len(head) + len(rest) > MAX_LINE_BYTES:
                head, overlong = b"", True
            elif rest:
                head += rest
    if head or overlong:
        size = f"more than {MAX_LINE_BYTES}" if overlong else str(len(head))
        warnings.warn(
            f"{_shown(path)}: skipped a truncated last line {lineno} ({size} "
            "bytes): a writer stopped mid-write",
            LedgerWarning,
            stacklevel=3,
        )


def _open_regular(path: str | os.PathLike[str]) -> io.FileIO:
    """``path`` opened for reading, or LedgerError when it is not a regular file.

    Opened non-blocking, so a FIFO without a writer does not hang the open; checked with
    ``fstat`` on the open file, so nothing can swap the file between check and read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LedgerError(
                f"{_shown(path)}: not a regular file (a FIFO, device or directory); "
                "give the path of a ledger file written by JsonlLedger"
            )
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return io.FileIO(fd, "rb", closefd=True)


def _shown(path: str | os.PathLike[str]) -> str:
    """A path as a message shows it: control characters escaped, never sent raw."""
    text = os.fsdecode(path)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def iter_ledger(path: str | os.PathLike[str]) -> Iterator[CallRecord]:
    """Yield the records of a ledger file in order.

    A last line without its newline is a torn write: it is skipped with a
    :class:`LedgerWarning`. Any other bad line (not a CallRecord, or longer than
    :data:`MAX_LINE_BYTES`) raises :class:`LedgerError`, since it means the file is not a
    routedllm ledger or was edited. Blank lines are ignored. See :func:`iter_lines` for
    what else is refused.
    """
    for lineno, line in iter_lines(path):
        if line is None:
            raise LedgerError(
                f"{_shown(path)}:{lineno}: not a CallRecord (longer than {MAX_LINE_BYTES} bytes)"
            )
        try:
            yield CallRecord.model_validate_json(line)
        except ValidationError as exc:
            raise LedgerError(
                f"{_shown(path)}:{lineno}: not a CallRecord ({problem(exc)})"
            ) from None


def problem(exc: ValidationError) -> str:
    """The first problem of a validation error, as ``field: message``; a field that is
    there but wrong comes before one that is missing (an older line lacks some)."""
    errors = exc.errors()
    first = next((e for e in errors if e["type"] != "missing"), errors[0])
    where = ".".join(str(p) for p in first["loc"]) or "line"
    return f"{where}: {first['msg']}"


def read_ledger(path: str | os.PathLike[str]) -> list[CallRecord]:
    """All records of a ledger file (see :func:`iter_ledger` for what is skipped)."""
    return list(iter_ledger(path))
