"""The models a replay can choose from, and what each choice costs and scores per row.

The space holds every catalog model and every model with outcomes in the dataset (ids
outside the catalog included). A row's cost for a model comes, in this order, from the
row's outcome ``cost_usd``, from a per-call price the user gives (``--cost MODEL=USD``),
or from the catalog's token prices and the row's size; otherwise it is unknown (NaN) and
counted, never taken as zero. Quality is measured (the outcome score) when the dataset has
outcomes, else expected: the catalog score on the row's benchmark, divided by 100.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from routedllm.core.catalog import BENCHMARKS, Catalog
from routedllm.core.errors import InvalidRequestError, UnknownModelError
from routedllm.evaluation.dataset import EvalSet, benchmark_of

MEASURED = "measured"
EXPECTED = "expected"


@dataclass(frozen=True, eq=False)
class ModelSpace:
    """Per-model prices and scores as arrays indexed like ``ids``."""

    ids: tuple[str, ...]
    input_price: np.ndarray  # USD per input token, NaN when unpriced
    output_price: np.ndarray
    per_call: np.ndarray  # USD per call given by the user, NaN when not given
    bench_scores: np.ndarray  # (models, benchmarks) catalog score / 100, NaN when missing
    column: np.ndarray  # the model's outcome column in the dataset, -1 when none
    catalog: Catalog

    @classmethod
    def build(
        cls, catalog: Catalog, data: EvalSet, per_call: Mapping[str, float] | None = None
    ) -> ModelSpace:
        """Catalog models first, then outcome models the catalog lacks."""
        ids = list(catalog.ids) + [m for m in data.models if m not in catalog]
        per_call = dict(per_call or {})
        for model, usd in per_call.items():
            if model not in ids:
                raise UnknownModelError(model, ids)
            if not usd >= 0:
                raise InvalidRequestError(f"--cost {model}: a cost must be >= 0, got {usd}")
        m, nan = len(ids), np.nan
        pin, pout, scores = np.full(m, nan), np.full(m, nan), np.full((m, len(BENCHMARKS)), nan)
        for i, mid in enumerate(ids):
            card = catalog.find(mid)
            if card is None:
                continue
            if card.input_usd_per_mtok is not None:
                pin[i] = card.input_usd_per_mtok / 1e6
            if card.output_usd_per_mtok is not None:
                pout[i] = card.output_usd_per_mtok / 1e6
            for b, bench in enumerate(BENCHMARKS):
                score = card.score(bench)
                if score is not None:
                    scores[i, b] = score / 100
        column = np.asarray([data.models.index(x) if x in data.models else -1 for x in ids])
        return cls(
            ids=tuple(ids),
            input_price=pin,
            output_price=pout,
            per_call=np.asarray([per_call.get(x, nan) for x in ids], dtype=float),
            bench_scores=scores,
            column=column,
            catalog=catalog,
        )

    def index(self, model: str) -> int:
        """Position of ``model``; an unknown id raises listing the known ones."""
        try:
            return self.ids.index(model)
        except ValueError:
            raise UnknownModelError(model, self.ids) from None

    def quality_mode(self, data: EvalSet) -> str:
        return MEASURED if data.has_outcomes else EXPECTED

    def cost(self, data: EvalSet, choice: np.ndarray, default_output_tokens: int) -> np.ndarray:
        """USD of each row's call to its chosen model; NaN when unknown or nothing chosen."""
        served = choice >= 0
        pick = np.where(served, choice, 0)
        row_cost = _outcome_of(data.costs, self.column[pick]) if data.models else None
        if row_cost is None or np.isnan(row_cost).any():  # rows priced by the catalog
            cost = self._priced(data, pick, default_output_tokens)
            if row_cost is not None:
                cost = np.where(np.isnan(row_cost), cost, row_cost)
        else:  # every row's outcome gives its cost
            cost = row_cost
        cost[~served] = np.nan
        return cost

    def _priced(self, data: EvalSet, pick: np.ndarray, default_output_tokens: int) -> np.ndarray:
        """Each row's cost from a per-call price given, else from the catalog's prices."""
        out = data.memo.get(("output_tokens", default_output_tokens))
        if out is None:
            out = np.where(data.output_tokens > 0, data.output_tokens, default_output_tokens)
            data.memo[("output_tokens", default_output_tokens)] = out
        cost = data.input_tokens * self.input_price[pick] + out * self.output_price[pick]
        if not np.isnan(self.per_call).all():
            given = self.per_call[pick]
            cost = np.where(np.isnan(given), cost, given)
        return cost

    def quality(self, data: EvalSet, choice: np.ndarray) -> np.ndarray:
        """Each row's score in [0, 1] for its chosen model; NaN when unknown."""
        served = choice >= 0
        pick = np.where(served, choice, 0)
        if self.quality_mode(data) == MEASURED:
            out = _outcome_of(data.scores, self.column[pick])
        else:
            out = self.bench_scores[pick, benchmark_index(data)]
        out[~served] = np.nan
        return out


def _outcome_of(table: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Each row's value in its column ``col`` of a (rows, models) outcome table, NaN where
    ``col`` is -1 (a model without outcomes): a gather along the rows, no index arrays."""
    values = np.take_along_axis(table, np.maximum(col, 0)[:, None], axis=1)[:, 0]
    if (col < 0).any():
        values[col < 0] = np.nan
    return values


def benchmark_index(data: EvalSet) -> np.ndarray:
    """Each row's benchmark as a position in :data:`routedllm.core.catalog.BENCHMARKS`."""
    index = data.memo.get("benchmark_index")
    if index is None:
        per_set = np.asarray([BENCHMARKS.index(benchmark_of(t)) for t in data.tag_sets])
        index = data.memo["benchmark_index"] = per_set[data.tag_index]
    return index
