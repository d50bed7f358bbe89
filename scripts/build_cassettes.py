"""Rebuild the constructed cassettes and the per-cassette table in ``cassettes/README.md``.

    python scripts/build_cassettes.py           # rebuild constructed cassettes, then the table
    python scripts/build_cassettes.py --table   # only rewrite the table

Constructed cassettes (their responses carry ``x-routedllm-constructed``) are deleted and
rebuilt by running the cassette tests against the fake gateway (``tests/fake_gateway.py``)
with record mode ``once``. Cassettes recorded from a live gateway are kept as they are.
"""

from __future__ import annotations

import argparse
import email.utils
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fake_gateway import BUILD_ENV, CASSETTE_DIR, CONSTRUCTED_HEADER  # noqa: E402

TESTS = ("tests/test_chat_model_cassettes.py", "tests/test_standard_integration.py")
SCAN = "tests/test_chat_model_cassettes.py::test_cassettes_hold_no_credentials"
START, END = "<!-- cassette-table:start -->", "<!-- cassette-table:end -->"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="only rewrite the README table")
    args = parser.parse_args(argv)
    if not args.table:
        for path in CASSETTE_DIR.rglob("*.yaml"):
            if _interactions(path) and all(_constructed(i) for i in _interactions(path)):
                path.unlink()
        env = {k: v for k, v in os.environ.items() if k != "GLOBAL_API_KEY"}
        env[BUILD_ENV] = "1"
        pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        status = subprocess.call(
            [*pytest, *TESTS, "--record-mode=once", "--deselect", SCAN], cwd=ROOT, env=env
        )
        status = status or subprocess.call([*pytest, SCAN], cwd=ROOT)  # every file, once built
        if status:
            return status
    readme = CASSETTE_DIR / "README.md"
    text = readme.read_text("utf-8")
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    readme.write_text(f"{head}{START}\n{_table()}\n{END}{tail}", "utf-8")
    print(f"wrote the table in {readme.relative_to(ROOT)}")
    return 0


def _interactions(path: Path) -> list[dict[str, Any]]:
    return (yaml.safe_load(path.read_text("utf-8")) or {}).get("interactions") or []


def _header(interaction: dict[str, Any], name: str) -> str | None:
    for key, values in (interaction["response"].get("headers") or {}).items():
        if key.lower() == name:
            return values[0] if isinstance(values, list) else values
    return None


def _constructed(interaction: dict[str, Any]) -> bool:
    return _header(interaction, CONSTRUCTED_HEADER) is not None


def _table() -> str:
    rows = ["| Cassette | How it was made | When | Responses |", "|---|---|---|---|"]
    for path in sorted(CASSETTE_DIR.rglob("*.yaml")):
        interactions = _interactions(path)
        if not interactions:
            continue
        made = (
            "constructed in the OpenAI wire format by the fake gateway"
            if all(_constructed(i) for i in interactions)
            else f"recorded from {interactions[0]['request']['uri'].split('/')[2]}"
        )
        dates = sorted({_day(_header(i, "date")) for i in interactions} - {None})
        statuses = []
        for i in interactions:
            stream = "text/event-stream" in (_header(i, "content-type") or "")
            statuses.append(f"{i['response']['status']['code']}{' SSE' if stream else ''}")
        name = path.relative_to(CASSETTE_DIR).as_posix()
        rows.append(
            f"| `{name}` | {made} | {', '.join(dates) or 'unknown'} | {', '.join(statuses)} |"
        )
    return "\n".join(rows)


def _day(date: str | None) -> str | None:
    if not date:
        return None
    try:
        return email.utils.parsedate_to_datetime(date).date().isoformat()
    except (TypeError, ValueError):
        return None


if __name__ == "__main__":
    raise SystemExit(main())
