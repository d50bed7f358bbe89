"""The learned router: features, training, the JSON artifact, the Router hook, the commands.

Logic tests use tests/data/learned_rows.jsonl: synthetic rows (tests/data/learned_rows.py)
where calculus and proof prompts need the dearer model and trivia and rewording do not.
The RouteLLM figures (tests at the end) need ../shared/external and skip without it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from routedllm.cli import main
from routedllm.core.catalog import Catalog
from routedllm.core.decision import Policy, Request, Router
from routedllm.core.errors import InvalidRequestError
from routedllm.core.tags import TAG_NAMES
from routedllm.evaluation.dataset import EvalSet
from routedllm.learning import LearnedRouter
from routedllm.learning.features import (
    HEAD_CHARS,
    STRUCTURE,
    ask_features,
    ask_text,
    call_structure,
    parse_term,
    structure,
    term_name,
    terms,
)
from routedllm.learning.train import (
    TrainSettings,
    _fit,
    _predict,
    choose_penalty,
    featurize,
    operating_gap,
    rows_hash,
    train,
    value_choice,
)
from routedllm.workload import WorkloadRow, read_rows

ROWS = Path(__file__).parent / "data" / "learned_rows.jsonl"
WEAK, STRONG = "deepseek-v4-flash", "gpt-4o"
ROUTELLM = Path(__file__).resolve().parents[1].parent / "shared" / "external" / "routellm"
HARD = [{"role": "user", "content": "Compute the integral of x^4 sin(x) from 0 to 7 and simplify."}]
EASY = [{"role": "user", "content": "What is the capital of Peru?"}]


@pytest.fixture(scope="module")
def trained() -> LearnedRouter:
    """Trained on the synthetic rows, with no operating point: the policy's gap applies."""
    rows = list(read_rows(ROWS))
    return train(rows, EvalSet.from_rows(rows), [WEAK, STRONG])


GAP5 = Policy(quality_gap=5, allowed_models=frozenset({WEAK, STRONG}))


# -- features -------------------------------------------------------------------------------
def test_terms_are_lower_cased_words_and_bigrams() -> None:
    found = terms("Prove THAT x^2, is even!")
    assert {"prove", "that", "x", "2", "is", "even"} <= found
    assert ("prove", "that") in found and ("2", "is") in found
    assert term_name(("prove", "that")) == "prove that"
    assert parse_term("prove that") == ("prove", "that") and parse_term("prove") == "prove"


def test_a_long_ask_is_read_at_its_head_and_tail_only() -> None:
    text = "alpha " + "filler " * 2000 + "omega"
    found = terms(text)
    assert "alpha" in found and "omega" in found
    assert len(found) < 20  # the middle is not read: a few words, and fragments at the cut


def test_the_ask_is_the_latest_user_turn() -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": [{"type": "text", "text": "second question"}]},
    ]
    assert ask_text(messages) == "second question"


_PIECES = (
    "Prove that x^2 = 4*y + 3 <= 10 for all n in N? ",
    "def f(x):\n    return x / 2  # `f`\n",
    "```python\nprint(1)\n```",
    "`` ~ ` ",
    "\r\n\n",
    "请证明这个等式成立？",
    "日本語のテキストです。",
    "Ünïcode WÖRDS İstanbul \u00a0\u3000 ",
    "\ud800 \udfff 😀 ",
    "ABC 0123456789 ",
)


def _texts(seed: int, count: int) -> list[str]:
    """Random asks from pieces: ASCII, CJK, accented and special-cased letters, Unicode
    spaces, lone surrogates, empty."""
    rng = random.Random(seed)
    out = [""]
    for _ in range(count):
        parts = (rng.choice(_PIECES)[: rng.randint(0, 60)] for _ in range(rng.randint(1, 60)))
        out.append("".join(parts))
    return out


def test_structure_features_are_as_defined() -> None:
    """The text's features are read with shortcuts (a one-character search before a count,
    the ASCII marks counted among the ASCII bytes alone): the values are the plain ones."""
    rng = random.Random(3)
    for text in _texts(3, 400):
        tags = rng.sample(TAG_NAMES, rng.randint(0, 3))
        tokens, messages = rng.randint(0, 9000), rng.randint(0, 3)
        head = text[:HEAD_CHARS].encode("utf-8", "replace")
        h = len(head) or 1
        expected = [
            1.0,
            math.log1p(len(text) or 1),
            math.log1p(text.count("\n")),
            math.log1p(tokens),
            *((h - len(head.translate(None, marks))) / h for marks in MARKS),
            math.log1p(text.count("?")),
            1.0 if "```" in text else 0.0,
            math.log(messages) if messages > 0 else 0.0,
            *(1.0 if t in tags else 0.0 for t in TAG_NAMES),
        ]
        assert structure(text, tags, tokens, messages) == expected, text
        assert structure(text, tuple(tags), tokens, messages) == expected, text


MARKS = (b"0123456789", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"=+^\\$<>*/")


def test_an_ask_read_again_predicts_as_one_read_afresh() -> None:
    """predict keeps an ask's terms and text structure (the last 128 asks): a prediction,
    first or again, equals predict_parts on terms() and structure() to the last bit, with
    most of the ask's terms known (sums in the same order)."""
    rng = random.Random(4)
    texts = _texts(4, 150)
    texts.append("Prove that x^2 = 4*y " * 1000)  # past the cached length
    vocab = sorted(set().union(*map(terms, _PIECES)), key=repr)
    models = ("a", "b")
    router = LearnedRouter(
        models=models,
        term_weights=tuple(
            {t: rng.gauss(0, 1) for t in vocab if rng.random() < 0.8} for _ in models
        ),
        structure_weights=tuple(tuple(rng.gauss(0, 0.1) for _ in STRUCTURE) for _ in models),
        mean=tuple(rng.random() for _ in STRUCTURE),
        scale=tuple(1 + rng.random() for _ in STRUCTURE),
    )
    for text in texts:
        messages = [{"role": "user", "content": text}]
        tags = ("code", "general")
        expected = router.predict_parts(terms(text), structure(text, tags, 700, 1))
        assert router.predict(messages, tags, 700) == expected, text
        assert router.predict(messages, tags, 700) == expected, text
        found, of_text = ask_features(text)
        assert found == terms(text)
        assert call_structure(of_text, tags, 700, 1) == structure(text, tags, 700, 1)


# -- training and prediction ----------------------------------------------------------------
def test_the_trained_router_sends_hard_prompts_to_the_strong_model(trained: LearnedRouter) -> None:
    hard = trained.predict(HARD, ("general",))
    easy = trained.predict(EASY, ("general",))
    assert hard[STRONG] - hard[WEAK] > 0.3
    assert abs(easy[STRONG] - easy[WEAK]) < 0.15


def test_pure_python_prediction_matches_the_numpy_fit() -> None:
    rows = list(read_rows(ROWS))
    data = EvalSet.from_rows(rows)
    feats = featurize(rows, data)
    idx = np.arange(len(rows))
    router = train(rows, data, [WEAK, STRONG])
    fit = _fit(feats, data.scores, idx, TrainSettings(), router.meta["settings"]["l2"])
    expected = _predict(fit, feats, idx[:20])
    for i in range(20):
        got = router.predict(
            rows[i].chat_messages(), data.tag_sets[data.tag_index[i]], int(data.input_tokens[i])
        )
        # the artifact rounds weights to 5-6 decimals
        assert [got[m] for m in data.models] == pytest.approx(expected[i].tolist(), abs=1e-4)


def _per_model(router: LearnedRouter, messages: list[dict], tags: tuple[str, ...]) -> list[float]:
    """The prediction written out model by model: weights summed from each model's own
    dict, the structure standardised, the logistic."""
    text = ask_text(messages)
    found = terms(text)
    dense = structure(text, tags, 100, len(messages))
    out = []
    for k in range(len(router.models)):
        weights = router.term_weights[k]
        logit = sum(weights[t] for t in found if t in weights) / math.sqrt(len(found))
        logit += sum(
            w * (x - m) / s
            for w, x, m, s in zip(
                router.structure_weights[k], dense, router.mean, router.scale, strict=True
            )
        )
        out.append(1 / (1 + math.exp(-logit)))
    return out


def test_a_prediction_sums_each_models_own_weights(trained: LearnedRouter) -> None:
    """The shared term index gives each model the sum of its own weights, also where the
    models weigh different terms (half of one model's dropped) and for unknown words."""
    data = trained.to_json()
    strong = data["terms"][STRONG]
    dropped = sorted(strong)[::2]
    data["terms"][STRONG] = {t: v for t, v in strong.items() if t not in dropped}
    uneven = LearnedRouter.from_json(data)
    ask = [{"role": "user", "content": f"{' '.join(dropped[:30])} zyzzyva quokka"}]
    asks = [row.chat_messages() for row in list(read_rows(ROWS))[:40]] + [HARD, EASY, ask]
    for router in (trained, uneven):
        for messages in asks:
            got = router.predict(messages, ("general",), 100)
            expected = _per_model(router, messages, ("general",))
            assert [got[m] for m in router.models] == pytest.approx(expected, rel=1e-12)
    assert uneven.predict(ask, ("general",))[STRONG] != trained.predict(ask, ("general",))[STRONG]


def test_the_artifact_round_trips_and_names_its_data(
    trained: LearnedRouter, tmp_path: Path
) -> None:
    path = trained.save(tmp_path / "router.json")
    data = json.loads(path.read_text())
    assert data["format"] == "routedllm-learned-router" and data["version"] == 1
    assert data["structure"]["names"] == list(STRUCTURE)
    assert data["meta"]["data_sha256"] == rows_hash(list(read_rows(ROWS)))
    loaded = LearnedRouter.load(path)
    assert loaded.predict(HARD, ("general",)) == pytest.approx(trained.predict(HARD, ("general",)))
    assert loaded.gap_points == trained.gap_points


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "something-else"}, "not a learned router"),
        ({"version": 99}, "version 99"),
        ({"structure": {"names": ["bias"], "mean": [], "scale": [], "weights": {}}}, "structure"),
        ({"terms": {}}, "malformed"),
    ],
)
def test_a_wrong_artifact_says_what_is_wrong(
    trained: LearnedRouter, tmp_path: Path, change: dict, message: str
) -> None:
    path = tmp_path / "router.json"
    path.write_text(json.dumps({**trained.to_json(), **change}))
    with pytest.raises(InvalidRequestError, match=message):
        LearnedRouter.load(path)


def test_a_broken_artifact_is_refused_when_loaded_not_at_the_first_call(
    trained: LearnedRouter, tmp_path: Path
) -> None:
    """A router that loads always predicts: a wrong shape, a weight that is no finite
    number, a binary file or a JSON list are named at load, never a zip() or
    AttributeError inside a later decision."""
    good = trained.to_json()
    model = good["models"][0]

    def broken(edit: Callable[[dict[str, Any]], None]) -> str:
        data = json.loads(json.dumps(good))
        edit(data)
        return json.dumps(data)

    cases = {
        "[]": "a JSON list",
        broken(lambda d: d["structure"].update(mean=[])): "mean has 0 values",
        broken(lambda d: d["structure"]["weights"][model].append(1.0)): f"weights of {model}",
        broken(lambda d: d["structure"]["weights"][model].__setitem__(0, "1")): "finite",
        broken(lambda d: d["structure"]["weights"][model].__setitem__(0, float("nan"))): "NaN",
        broken(lambda d: d["terms"][model].update(x=float("inf"))): "Infinity",
        broken(lambda d: d["structure"]["scale"].__setitem__(1, 0.0)): "scale",
        broken(lambda d: d.update(models=[])): "give distinct ids",
        broken(lambda d: d.update(gap_points=True)): "finite",
    }
    path = tmp_path / "router.json"
    for text, message in cases.items():
        path.write_text(text, "utf-8")
        with pytest.raises(InvalidRequestError, match=re.escape(message)) as err:
            LearnedRouter.load(path)
        assert str(path) in str(err.value)
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(InvalidRequestError, match="not UTF-8 text"):
        LearnedRouter.load(path)


def test_a_tiny_structure_spread_survives_the_artifact(
    trained: LearnedRouter, tmp_path: Path
) -> None:
    """A near-constant feature's spread is written with its digits, not rounded to 0."""
    tiny = dataclasses.replace(trained, scale=(trained.scale[0], 3e-8, *trained.scale[2:]))
    loaded = LearnedRouter.load(tiny.save(tmp_path / "tiny.json"))
    assert loaded.scale[1] == pytest.approx(3e-8)
    assert loaded.scale[2:] == tiny.scale[2:] or loaded.scale[2:] == pytest.approx(tiny.scale[2:])


def test_the_operating_point_meets_its_target_on_the_rows_it_was_chosen_on() -> None:
    rng = np.random.default_rng(0)
    adv = rng.random(4000)
    strong = (rng.random(4000) < 0.9).astype(float)
    weak = np.where(rng.random(4000) < adv, 0.0, strong)  # weak fails where adv is high
    scores = np.column_stack([weak, strong])
    predicted = np.column_stack([1 - adv, np.ones(4000)])
    point = operating_gap(predicted, scores, [0, 1], 0.95, 1)
    assert point["gap_points"] is not None and 0 < point["strong_share"] < 1
    choice = value_choice(predicted, [0, 1], point["gap_points"] / 100)
    assert scores[np.arange(4000), choice].mean() >= 0.95 * strong.mean()
    unreachable = operating_gap(predicted, np.column_stack([strong * 0, strong]), [0, 1], 1.0, 1)
    assert unreachable["gap_points"] is None or unreachable["strong_share"] == 1.0


def _coin_flip_rows(n: int, seed: int = 0) -> list[WorkloadRow]:
    """Prompts whose words say nothing: each model is right on a coin flip."""
    rng = np.random.default_rng(seed)
    words = ["alpha", "bravo", "delta", "gamma", "kilo", "lima", "omega", "sigma"]
    rows = []
    for i in range(n):
        prompt = " ".join(rng.choice(words, 6).tolist()) + f" item {i}?"
        outcomes = {
            m: {"score": float(rng.random() < 0.5), "cost_usd": c}
            for m, c in ((WEAK, 0.0001), (STRONG, 0.002))
        }
        rows.append(
            WorkloadRow.model_validate({"id": f"r{i}", "prompt": prompt, "outcomes": outcomes})
        )
    return rows


def test_the_penalty_is_chosen_out_of_fold_by_how_well_the_scores_predict() -> None:
    """Words that say nothing are penalised hard (predictions stay near the base rates,
    so no prompt looks harder than another by more than noise); words that tell the
    models apart keep a weak penalty."""
    noise = _coin_flip_rows(60)
    data = EvalSet.from_rows(noise)
    w, s = data.column(WEAK), data.column(STRONG)
    chosen = choose_penalty(featurize(noise, data), data, np.arange(60), w, s, TrainSettings())
    assert chosen.l2 == max(TrainSettings().l2_grid)
    assert set(chosen.tried) == set(TrainSettings().l2_grid)
    assert chosen.oof.shape == (60, len(data.models))

    rows = list(read_rows(ROWS))
    data = EvalSet.from_rows(rows)
    w, s = data.column(WEAK), data.column(STRONG)
    signal = choose_penalty(
        featurize(rows, data), data, np.arange(len(rows)), w, s, TrainSettings()
    )
    assert signal.l2 < 0.1
    assert signal.tried[signal.l2] is not None and signal.tried[signal.l2] > 0.6  # random: 0.5


def test_a_fixed_penalty_is_used_as_given_and_recorded() -> None:
    rows = list(read_rows(ROWS))
    data = EvalSet.from_rows(rows)
    router = train(rows, data, [WEAK, STRONG], settings=TrainSettings(l2=0.5))
    assert router.meta["settings"]["l2"] == 0.5
    assert list(router.meta["l2_out_of_fold_apgr"]) == ["0.5"]
    trained_default = train(rows, data, [WEAK, STRONG])
    assert trained_default.meta["settings"]["l2"] in TrainSettings().l2_grid
    assert len(trained_default.meta["l2_out_of_fold_apgr"]) == len(TrainSettings().l2_grid)


@pytest.mark.parametrize(
    "settings",
    [{"l2": -1.0}, {"l2": float("nan")}, {"l2_grid": ()}, {"l2_grid": (1e-3, float("inf"))}],
)
def test_bad_penalties_are_refused(settings: dict) -> None:
    with pytest.raises(InvalidRequestError, match="l2"):
        TrainSettings(**settings)


# -- the Router hook ------------------------------------------------------------------------
def test_the_router_picks_per_prompt_with_learned_scores(
    trained: LearnedRouter, catalog: Catalog
) -> None:
    policy = GAP5
    router = Router(catalog, policy, trained)
    hard = router.decide(Request(messages=HARD))
    easy = router.decide(Request(messages=EASY))
    assert (hard.model, easy.model) == (STRONG, WEAK)
    assert hard.policy == "value+learned"
    assert hard.score == pytest.approx(100 * trained.predict(HARD, hard.tags)[STRONG], abs=1e-3)
    # without the learned scores, both go where the catalog's scores send them
    plain = Router(catalog, policy)
    assert plain.decide(Request(messages=HARD)).model == plain.decide(Request(messages=EASY)).model


def test_models_the_router_does_not_know_keep_their_catalog_scores(
    trained: LearnedRouter, catalog: Catalog
) -> None:
    policy = Policy(allowed_models=frozenset({WEAK, "claude-3.5-sonnet"}))
    decision = Router(catalog, policy, trained).decide(Request(messages=EASY))
    assert decision.model == WEAK and decision.score == decision.best_score
    claude = catalog.get("claude-3.5-sonnet").score("mmlu")
    reasons = [r.reason for r in decision.rejected if r.model == "claude-3.5-sonnet"]
    assert reasons and reasons[0].startswith(f"mmlu {claude} below the floor")


def test_a_trained_operating_point_replaces_the_policy_gap(catalog: Catalog) -> None:
    rows = list(read_rows(ROWS))
    router = train(rows, EvalSet.from_rows(rows), [WEAK, STRONG], target=0.95)
    point = router.meta["operating_point"]
    assert router.gap_points == point["gap_points"] is not None
    scores, gap = router.score(Request(messages=EASY), ("general",), 10)
    assert gap == router.gap_points and set(scores) == {WEAK, STRONG}
    decision = Router(catalog, GAP5, router).decide(Request(messages=EASY))
    assert decision.quality_floor == pytest.approx(decision.best_score - router.gap_points)


def test_the_chat_model_loads_a_router_file(trained: LearnedRouter, tmp_path: Path) -> None:
    from routedllm.adapters.langchain.chat_model import RoutedChatModel
    from tests.conftest import fixture_catalog

    path = trained.save(tmp_path / "router.json")
    model = RoutedChatModel(
        catalog=fixture_catalog(),
        policy=GAP5,
        learned_router=str(path),
        api_key="test",
    )
    assert isinstance(model.learned_router, LearnedRouter)
    assert model.route(HARD).model == STRONG and model.route(EASY).model == WEAK


def test_the_litellm_handler_loads_a_router_from_the_environment(
    trained: LearnedRouter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch a price map
    pytest.importorskip("litellm")
    from routedllm.adapters.litellm.callback import LiteLLMHandler

    path = trained.save(tmp_path / "router.json")
    catalog = str(Path(__file__).parent / "data" / "fixture_catalog.yaml")
    env = {"ROUTEDLLM_CATALOG": catalog, "ROUTEDLLM_LEARNED_ROUTER": str(path)}
    handler = LiteLLMHandler.from_env(env)
    assert isinstance(handler._router.scorer, LearnedRouter)
    assert LiteLLMHandler(handler.catalog)._router.scorer is None


def test_the_artifact_loads_without_numpy() -> None:
    """The base install applies a router: model and features import no numpy, nor the
    evaluation package that needs it."""
    from tests.test_architecture import imports_of

    for module in ("routedllm.learning.model", "routedllm.learning.features"):
        targets = [i.target for i in imports_of(module)]
        assert not [t for t in targets if t.startswith(("numpy", "routedllm.evaluation"))]


# -- commands -------------------------------------------------------------------------------
def test_train_then_route(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setenv("ROUTEDLLM_CATALOG", "")
    out = tmp_path / "router.json"
    catalog = str(Path(__file__).parent / "data" / "fixture_catalog.yaml")
    assert main(["train", str(ROWS), "--target", "0.95", "-o", str(out), "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["cheapest_first"] == [WEAK, STRONG]  # by mean outcome cost
    assert meta["operating_point"]["target"] == 0.95 and meta["rows"] == 240
    args = ["route", "--catalog", catalog, "--allow-model", WEAK, "--allow-model", STRONG]
    args += ["--gap", "5"]
    assert main([*args, "--learned", str(out), "--json", HARD[0]["content"]]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == STRONG


def test_train_says_which_penalty_it_chose_or_was_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "router.json")
    assert main(["train", str(ROWS), "-o", out]) == 0
    assert "chosen out of fold (APGR per l2 tried: 0.0001: " in capsys.readouterr().out
    assert main(["train", str(ROWS), "-o", out, "--l2", "0.3"]) == 0
    assert "weight penalty: l2 0.3 (fixed by --l2)" in capsys.readouterr().out
    assert json.loads(Path(out).read_text())["meta"]["settings"]["l2"] == 0.3
    assert main(["train", str(ROWS), "-o", out, "--l2", "-1"]) != 0
    assert "l2" in capsys.readouterr().err


def test_train_refuses_an_output_it_cannot_write_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    import routedllm.learning.train as training

    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("trained before checking the output path")

    monkeypatch.setattr(training, "train", never)
    for bad in (tmp_path / "missing" / "r.json", tmp_path):
        assert main(["train", str(ROWS), "-o", str(bad)]) == 2
        err = capsys.readouterr().err
        assert f"{bad}: cannot write the learned router" in err and "Traceback" not in err


def test_train_needs_two_scored_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = tmp_path / "one.jsonl"
    rows.write_text(
        "".join(
            json.dumps({"id": f"r{i}", "prompt": f"question {i}", "outcomes": {
                "a": {"score": float(i % 2)}}}) + "\n"
            for i in range(8)
        )
    )  # fmt: skip
    assert main(["train", str(rows), "-o", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert "the rows score a; give outcomes of two models or more" in err
    assert not (tmp_path / "r.json").exists()


def test_train_reads_graded_online_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "".join(
            json.dumps({"id": f"r{i}", "prompt": p}) + "\n"
            for i, p in enumerate([HARD[0]["content"], EASY[0]["content"]] * 10)
        )
    )
    graded = tmp_path / "graded.json"
    report_rows = [
        {"id": f"r{i}", "model": model, "score": score, "cost_usd": cost}
        for i in range(20)
        for model, score, cost in (
            (WEAK, float(i % 2), 0.0001),
            (STRONG, 1.0, 0.002),
        )
    ]
    graded.write_text(json.dumps({"policies": [{"rows": report_rows}]}))
    out = tmp_path / "router.json"
    assert main(["train", str(rows), "--graded", str(graded), "-o", str(out)]) == 0
    assert "trained on 20 rows" in capsys.readouterr().out
    router = LearnedRouter.load(out)
    hard, easy = router.predict(HARD, ("general",)), router.predict(EASY, ("general",))
    assert hard[STRONG] - hard[WEAK] > easy[STRONG] - easy[WEAK]


def test_graded_rows_must_be_in_the_workload(tmp_path: Path) -> None:
    graded = tmp_path / "graded.json"
    graded.write_text(
        json.dumps({"policies": [{"rows": [{"id": "nope", "model": WEAK, "score": 1}]}]})
    )
    from routedllm.learning.cli import with_graded

    with pytest.raises(InvalidRequestError, match="nope"):
        with_graded(list(read_rows(ROWS)), [str(graded)])


def test_eval_learned_reports_mean_and_sd_over_splits(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "eval",
            str(ROWS),
            "--strong",
            STRONG,
            "--weak",
            WEAK,
            "--learned",
            "--splits",
            "3",
            "--json",
        ]
    )
    assert code == 0
    two = json.loads(capsys.readouterr().out)["two_model"]
    learned = two["learned"]
    assert set(learned) >= {"apgr", "cpt50", "cpt80", "strong_share_at_95", "operating_point"}
    assert learned["apgr"]["mean"] > 0.6 and learned["apgr"]["sd"] >= 0
    op = learned["operating_point"]
    assert op["splits"] == 3 and 0 <= op["splits_meeting"] <= 3 and op["target"] == 0.95
    assert set(two["over_splits"]) >= {
        "learned",
        "tag_router",
        "tag_router_tags",
        "oracle",
        "random",
    }


def test_eval_learned_needs_two_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(ROWS), "--learned", "--splits", "3"]) != 0
    assert "--strong and --weak" in capsys.readouterr().err


# -- published tables (../shared/external; skipped without it) ------------------------------
@pytest.mark.skipif(not ROUTELLM.is_dir(), reason="needs ../shared/external/routellm")
def test_routellm_gsm8k_learned_router_beats_random() -> None:
    from routedllm.evaluation import dataset, published
    from routedllm.learning.evaluate import split_figures

    raw = published.routellm_rows(ROUTELLM, "gsm8k")
    rows = dataset.validated(({**r, "tags": None} for r in raw), "gsm8k")
    data = EvalSet.from_rows(rows)
    fig = split_figures(
        rows, data, "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1", splits=2
    )
    assert fig["learned"]["apgr"]["mean"] > 0.55
    # routedllm's own tags barely split GSM8K: its tag router stays near random
    assert fig["tag_router_tags"]["apgr"]["mean"] == pytest.approx(0.5, abs=0.03)


def test_tied_rows_move_together_on_the_curve() -> None:
    from routedllm.learning.evaluate import curve

    adv = np.array([0.3, 0.1 + 0.2, 0.0, -0.1])  # 0.1 + 0.2 != 0.3 in floating point
    strong, weak = np.array([1.0, 1.0, 0.0, 1.0]), np.array([0.0, 0.0, 0.0, 1.0])
    points = curve(adv, strong, weak)
    assert [x for x, _ in points] == [0.0, 0.5, 0.75, 1.0]
    assert points[1][1] == pytest.approx(0.75) and points[-1][1] == pytest.approx(0.75)
