"""Reading a user's file safely: regular files only, bounded in size, UTF-8 text, and YAML
or JSON parsed strictly (no duplicate keys, no NaN or infinity in JSON, bounded nesting and
alias expansion, libyaml's C parser where it is installed).

Every problem is a :class:`FileProblem` whose message names the file and, where known, the
line; callers turn it into their own error type (``CatalogError``, ``InvalidRequestError``).
A message never quotes the file's content beyond a key name: a file may hold a secret.
"""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

MAX_NESTING = 64
"""Containers nested deeper than this are refused (a catalog needs 4 levels, a workload
row's messages about 6)."""


class FileProblem(ValueError):
    """A file cannot be read as asked; the message names the file and what is wrong."""


def shown(path: str | os.PathLike[str]) -> str:
    """A path as a message shows it: control characters escaped, never sent raw."""
    text = os.fsdecode(path)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


_KINDS = (
    (stat.S_ISDIR, "Is a directory"),
    (stat.S_ISFIFO, "Is a FIFO (named pipe)"),
    (stat.S_ISCHR, "Is a character device"),
    (stat.S_ISBLK, "Is a block device"),
    (stat.S_ISSOCK, "Is a socket"),
)


def kind_of(mode: int) -> str:
    """What a non-regular file is, in the words of ``strerror`` (``Is a directory``)."""
    return next((words for test, words in _KINDS if test(mode)), "Is a special file")


def open_regular(path: str | os.PathLike[str], what: str) -> io.FileIO:
    """``path`` opened for reading, or :class:`FileProblem` when it is not a regular file.

    Opened non-blocking, so a FIFO without a writer does not hang the open, and checked
    with ``fstat`` on the open file, so nothing can swap the file between check and read.
    ``what`` names the file in messages (``catalog file``, ``workload``).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise FileProblem(f"{shown(path)}: cannot read {what}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise FileProblem(
                f"{shown(path)}: cannot read {what}: {kind_of(mode)}, not a regular file"
            )
        if getattr(os, "O_NONBLOCK", 0):  # POSIX
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return io.FileIO(fd, "rb", closefd=True)


def read_bytes(path: str | os.PathLike[str], what: str, limit: int) -> bytes:
    """The whole of a regular file of at most ``limit`` bytes (checked before reading and
    while reading, so a file that grows cannot pass it)."""
    with open_regular(path, what) as f:
        size = os.fstat(f.fileno()).st_size
        chunks: list[bytes] = []
        got = 0
        while size <= limit and got <= limit and (chunk := f.read(limit + 1 - got)):
            chunks.append(chunk)
            got += len(chunk)
        if size > limit or got > limit:
            raise FileProblem(
                f"{shown(path)}: {what} is larger than {limit // 2**20} MiB; split it or trim it"
            )
    return b"".join(chunks)


def decode(data: bytes, origin: str, what: str) -> str:
    """UTF-8 text (a byte-order mark is dropped), or :class:`FileProblem` for binary data."""
    nul = data.find(b"\0")
    if nul >= 0:
        raise FileProblem(
            f"{origin}: {what} is binary (a NUL byte at offset {nul}), not UTF-8 text"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileProblem(
            f"{origin}: {what} is not UTF-8 text (byte 0x{data[exc.start]:02x} "
            f"at offset {exc.start})"
        ) from None


def check_writable(path: str | os.PathLike[str], what: str) -> None:
    """Refuse an output path that cannot be written, naming it, before the work that fills
    it: a folder, or a file in a folder that does not exist."""
    target = Path(path)
    if target.is_dir():
        raise FileProblem(f"{shown(path)}: cannot write {what}: it is a folder")
    if not target.parent.is_dir():
        raise FileProblem(f"{shown(path)}: cannot write {what}: no folder {shown(target.parent)}")


@contextmanager
def writing(path: str | os.PathLike[str], what: str) -> Iterator[None]:
    """An OS error while writing ``path`` as a :class:`FileProblem` naming it."""
    try:
        yield
    except OSError as exc:
        raise FileProblem(f"{shown(path)}: cannot write {what}: {exc.strerror or exc}") from None


# -- JSON -------------------------------------------------------------------------------------
def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"key {twice!r} appears twice in one object")
    return out


_STRICT_JSON = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_no_constant)


def parse_json(text: str, origin: str) -> Any:
    """JSON with every object's keys unique and no NaN or Infinity, nested at most
    :data:`MAX_NESTING` deep."""
    try:
        data = _STRICT_JSON.decode(text)
    except json.JSONDecodeError as exc:
        raise FileProblem(
            f"{origin}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except ValueError as exc:  # from the hooks
        raise FileProblem(f"{origin}: {exc}") from None
    except RecursionError:
        raise FileProblem(_too_deep(origin, None)) from None
    check_nesting(data, origin)
    return data


# -- YAML -------------------------------------------------------------------------------------
_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class StrictLoader(_Base):  # type: ignore[misc, valid-type]
    """PyYAML's safe loader on libyaml's C parser when installed, refusing a key that
    appears twice in one mapping (YAML's spec forbids it; PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            keys = [
                (k.tag, k.value, k.start_mark.line + 1)
                for k, _ in node.value
                if isinstance(k, yaml.ScalarNode) and not k.tag.endswith(":merge")
            ]
            if len({(tag, value) for tag, value, _ in keys}) != len(keys):
                first: dict[tuple[str, str], int] = {}
                for tag, value, line in keys:
                    if (tag, value) not in first:
                        first[tag, value] = line
                    else:
                        seen = first[tag, value]
                        raise FileProblem(
                            f"{self.name}: line {line}: key {value!r} appears twice in one "
                            f"mapping (first at line {seen}); keep one"
                        )
        return super().construct_mapping(node, deep=deep)


# A date stays the text it was written as: the schema checks it and names the field (PyYAML
# would raise a bare ValueError for ``2026-13-45``).
StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", StrictLoader.construct_yaml_str)


def parse_yaml(text: str, origin: str) -> Any:
    """YAML (or JSON, its subset) read strictly; see :class:`StrictLoader`. Aliases may not
    expand to more values than the text holds characters (a "billion laughs" file)."""
    loader = StrictLoader(text)
    loader.name = origin
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        # Name the place and the problem only: PyYAML's full message quotes the offending
        # line, which may hold a secret.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None)
        if problem and "nesting depth" in problem:
            raise FileProblem(_too_deep(origin, mark)) from None
        raise FileProblem(
            f"{origin}: not valid YAML{where}: {problem or type(exc).__name__}"
        ) from None
    except RecursionError:  # the pure-Python parser, without libyaml
        raise FileProblem(_too_deep(origin, None)) from None
    except FileProblem:
        raise
    except (ValueError, OverflowError) as exc:  # a constructor's own (a bad !!float...)
        raise FileProblem(f"{origin}: not valid YAML: {type(exc).__name__}") from None
    finally:
        loader.dispose()
    if "&" in text:  # anchors: an alias can stand for a whole tree
        check_nesting(data, origin, max_values=len(text) + 1000)
    else:
        check_nesting(data, origin)
    return data


def _too_deep(origin: str, mark: Any) -> str:
    where = f" at line {mark.line + 1}" if mark is not None else ""
    return (
        f"{origin}: nested too deep{where} (more than {MAX_NESTING} levels of lists or "
        "mappings); this is not a file routedllm wrote or documents"
    )


def check_nesting(data: Any, origin: str, max_values: int | None = None) -> None:
    """Refuse ``data`` nested deeper than :data:`MAX_NESTING`, or (``max_values``) holding
    more values once aliases are expanded; without recursion, each shared value once."""
    height: dict[int, int] = {}  # id of a list or dict -> levels below and including it
    size: dict[int, int] = {}  # ... -> values in it, aliases expanded
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        value, done = stack.pop()
        key = id(value)
        children = value.values() if isinstance(value, dict) else value
        if done:
            on_path.discard(key)
            inner = [c for c in children if isinstance(c, dict | list)]
            height[key] = 1 + max((height[id(c)] for c in inner), default=0)
            size[key] = len(children) + sum(size[id(c)] for c in inner)
            if height[key] > MAX_NESTING:
                raise FileProblem(_too_deep(origin, None))
            if max_values is not None and size[key] > max_values:
                raise FileProblem(
                    f"{origin}: YAML aliases expand to more than {max_values} values, more "
                    "than the file holds characters; write the values out"
                )
            continue
        if not isinstance(value, dict | list) or key in height:
            continue
        if key in on_path:
            raise FileProblem(f"{origin}: a YAML alias refers to itself (a recursive value)")
        on_path.add(key)
        stack.append((value, True))
        stack.extend((c, False) for c in children if isinstance(c, dict | list))
        if len(on_path) > MAX_NESTING:
            raise FileProblem(_too_deep(origin, None))
