"""A trained router (``routedllm train -o router.json``) measured on held-out outcome rows:
the ``learned:PATH`` policy of ``routedllm eval``.

The artifact predicts each model's score from a row's prompt; per row the policy takes the
value rule :meth:`~routedllm.core.decision.Router.decide` applies to learned scores: the
cheapest model whose prediction is within the gap of the row's best prediction (the gap
the artifact was trained for, else ``--gap``). It chooses among the artifact's models that
have outcomes in the table, so rows from another distribution, other tags or other models
are measured as they come: a model the artifact does not know is never chosen, a model
the table lacks is left out (and named in a note).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from routedllm.core.decision import Policy
from routedllm.core.errors import InvalidRequestError
from routedllm.evaluation.dataset import EvalSet
from routedllm.evaluation.policies import Choice
from routedllm.evaluation.space import ModelSpace
from routedllm.workload import WorkloadRow

PREFIX = "learned:"


@dataclass
class LearnedPick:
    """Per row, the cheapest of ``models`` whose predicted score is within ``gap`` (a score
    fraction) of the row's best prediction; ``cheapest_first`` orders the models."""

    name: str
    models: tuple[str, ...]  # cheapest first
    gap: float
    predicted: Mapping[str, np.ndarray] = field(repr=False)  # row id -> one per model
    kind = "learned"
    fixed = True  # the same choice on every split: nothing is learned from the table
    default_output_tokens: int = Policy().default_output_tokens

    def choose(self, data: EvalSet, space: ModelSpace) -> Choice:
        try:
            rows = np.stack([self.predicted[row_id] for row_id in data.ids])
        except KeyError as exc:  # rows other than those predicted: a caller's mistake
            raise InvalidRequestError(f"{self.name}: no prediction for row {exc}") from None
        from routedllm.learning.train import value_choice  # the rule the Router applies

        pick = value_choice(rows, range(len(self.models)), self.gap)  # columns: cheapest first
        ids = np.asarray([space.index(m) for m in self.models], dtype=np.int32)
        return Choice(ids[pick])


def is_learned(spec: str) -> bool:
    return spec.startswith(PREFIX)


def learned_policy(
    spec: str,
    data: EvalSet,
    rows: Sequence[WorkloadRow] | None,
    cheapest_first: Sequence[str],
    gap_points: float,
    notes: list[str],
) -> LearnedPick:
    """The ``learned:PATH`` policy over ``data`` (read from ``rows``): the artifact loaded,
    each row's predictions made once. An artifact none of whose models has outcomes here
    is an error naming both lists."""
    from routedllm.learning import LearnedRouter  # numpy-free; loaded only when asked

    path = spec[len(PREFIX) :]
    if not path:
        raise InvalidRequestError(f"policy {spec!r}: give the router's file, learned:router.json")
    if rows is None:
        raise InvalidRequestError(
            f"policy {spec!r} reads each row's prompt: give the rows (Settings.rows)"
        )
    router = LearnedRouter.load(path)  # a malformed artifact raises naming the file
    known = [m for m in cheapest_first if m in router.models]
    if not known:
        raise InvalidRequestError(
            f"policy {spec!r}: the router scores {', '.join(router.models)}, and none has "
            f"outcomes here (models with outcomes: {', '.join(data.models)})"
        )
    unseen = [m for m in router.models if m not in data.models]
    if unseen:
        notes.append(
            f"{spec}: {', '.join(unseen)} not in the table's outcomes, left out; it chooses "
            f"among {', '.join(known)}"
        )
    gap = router.gap_points if router.gap_points is not None else gap_points
    by_id = {row.id: row for row in rows}
    predicted: dict[str, np.ndarray] = {}
    for i, row_id in enumerate(data.ids):
        row = by_id.get(row_id)
        if row is None:
            raise InvalidRequestError(
                f"policy {spec!r}: row {row_id!r} is not among the rows given"
            )
        tags = data.tag_sets[data.tag_index[i]]
        scores = router.predict(row.chat_messages(), tags, int(data.input_tokens[i]))
        predicted[row_id] = np.asarray([scores[m] for m in known])
    return LearnedPick(spec, tuple(known), gap / 100, predicted)
