"""Evaluation: measure routing policies on cost against quality, offline and online.

Needs the ``eval`` extra (numpy; matplotlib for plots; tqdm for the progress bar;
jsonschema for the JSON-schema grader). Names are imported on first use, so importing this
package (as the ``routedllm`` command does) costs nothing and needs none of them.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EvalSet": "dataset",
    "load_rows": "dataset",
    "write_rows": "dataset",
    "routellm_rows": "published",
    "ModelSpace": "space",
    "Always": "policies",
    "ByGroup": "policies",
    "Oracle": "policies",
    "RandomPick": "policies",
    "Routed": "policies",
    "parse_policies": "policies",
    "Evaluation": "replay",
    "Result": "replay",
    "evaluate": "replay",
    "replay": "replay",
    "Calibration": "calibrate",
    "learn": "calibrate",
    "split": "calibrate",
    "write_override": "calibrate",
    "Report": "suite",
    "Settings": "suite",
    "run": "suite",
    "Grade": "graders",
    "grade": "graders",
    "OnlineReport": "online",
    "run_online": "online",
    "ShadowHandler": "shadow",
    "LedgerReplay": "ledger_replay",
    "replay_ledger": "ledger_replay",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'routedllm.evaluation' has no attribute {name!r}")
    return getattr(importlib.import_module(f"routedllm.evaluation.{module}"), name)


def __dir__() -> list[str]:
    return __all__
