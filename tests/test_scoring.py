"""The scoring engine: AUROC, DeLong, p-values, BH, effect size, contrast scoring, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu, norm
from sklearn.metrics import roc_auc_score

from tools.domain import Hypothesis, HypothesisScore, InputError
from tools.scoring.contrast import contrast_for, contrast_prompt
from tools.scoring.engine import score_hypotheses, score_matrix
from tools.scoring.statistics import auroc_statistics, benjamini_hochberg, evidence_indices


def naive_delong(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """AUROC and DeLong variance from the full pairwise kernel (the textbook O(m n) definition)."""
    psi = (pos[:, None] > neg[None, :]).astype(float) + 0.5 * (pos[:, None] == neg[None, :])
    auc = psi.mean()
    v10 = psi.mean(axis=1)
    v01 = psi.mean(axis=0)
    s10 = v10.var(ddof=1) if pos.size > 1 else 0.0
    s01 = v01.var(ddof=1) if neg.size > 1 else 0.0
    return float(auc), float(s10 / pos.size + s01 / neg.size)


def make_embeddings(rng: np.random.Generator, n: int, h: int, d: int, frac_a: float = 0.4, signal: float = 0.3):
    groups = rng.random(n) < frac_a
    groups[0], groups[1] = True, False
    txt = rng.standard_normal((h, d)).astype(np.float32)
    img = rng.standard_normal((n, d)).astype(np.float32)
    img[groups] += signal * txt[0]
    return img, groups, txt


# ---------------------------------------------------------------- AUROC and DeLong


@pytest.mark.parametrize("decimals", [None, 1])  # None: continuous scores; 1: heavy ties
def test_auroc_and_delong_match_references(decimals: int | None) -> None:
    rng = np.random.default_rng(1)
    scores = rng.standard_normal((6, 300)).astype(np.float32)
    groups = rng.random(300) < 0.3
    scores[:, groups] += np.linspace(-0.5, 1.0, 6, dtype=np.float32)[:, None]
    if decimals is not None:
        scores = np.round(scores, decimals)
    stats = auroc_statistics(scores, groups)
    z = norm.ppf(0.975)
    for h in range(6):
        assert stats.auroc[h] == pytest.approx(roc_auc_score(groups, scores[h]), abs=1e-12)
        auc, var = naive_delong(scores[h, groups].astype(float), scores[h, ~groups].astype(float))
        assert stats.auroc[h] == pytest.approx(auc, abs=1e-12)
        assert stats.ci_low[h] == pytest.approx(max(0.0, auc - z * np.sqrt(var)), abs=1e-9)
        assert stats.ci_high[h] == pytest.approx(min(1.0, auc + z * np.sqrt(var)), abs=1e-9)


def test_delong_hand_worked_example_with_a_tie() -> None:
    # A = [0.9, 0.8, 0.4], B = [0.7, 0.4, 0.2]. V10 = [1, 1, 0.5], V01 = [2/3, 5/6, 1], AUROC = 5/6,
    # var = var(V10)/3 + var(V01)/3 = (1/12)/3 + (1/36)/3 = 1/27.
    scores = np.array([[0.9, 0.8, 0.4, 0.7, 0.4, 0.2]])
    groups = np.array([True, True, True, False, False, False])
    stats = auroc_statistics(scores, groups)
    assert stats.auroc[0] == pytest.approx(5 / 6)
    half = 1.959963984540054 * np.sqrt(1 / 27)
    assert stats.ci_low[0] == pytest.approx(5 / 6 - half)
    assert stats.ci_high[0] == 1.0  # clipped
    # one tie block of size 2 (0.4, 0.4): scipy's asymptotic p with tie correction; n=3 with a tie -> asymptotic
    expected = mannwhitneyu([0.9, 0.8, 0.4], [0.7, 0.4, 0.2]).pvalue
    assert stats.p_value[0] == pytest.approx(expected)


def test_auroc_direction_and_perfect_separation() -> None:
    groups = np.array([True] * 5 + [False] * 5)
    up = np.arange(10, 0, -1, dtype=float)  # A highest
    stats = auroc_statistics(np.stack([up, -up]), groups)
    assert stats.auroc.tolist() == [1.0, 0.0]
    # DeLong's variance is 0 under perfect separation: Newcombe's score interval is used instead.
    # Hand-worked for 5 vs 5 (N* = 4): the lower bound t solves 1 - t = z^2 t / 25 [1 + 4((1-t)/(2-t) + t/(1+t))],
    # t = 0.6427 (checked by substitution: both sides 0.3573)
    assert stats.ci_high[0] == 1.0 and stats.ci_low[1] == 0.0
    assert stats.ci_low[0] == pytest.approx(0.6427, abs=1e-4)
    assert stats.ci_high[1] == pytest.approx(1 - stats.ci_low[0])
    assert stats.p_value[0] == pytest.approx(mannwhitneyu(up[:5], up[5:]).pvalue)  # exact, 2/252
    assert stats.p_value[0] == pytest.approx(2 / 252)


def test_row_blocks_and_threads_give_the_same_numbers() -> None:
    rng = np.random.default_rng(2)
    scores = np.round(rng.standard_normal((40, 6000)), 2).astype(np.float32)
    groups = rng.random(6000) < 0.5
    one = auroc_statistics(scores, groups, workers=1)
    two = auroc_statistics(scores, groups, workers=2)
    for field in ("auroc", "ci_low", "ci_high", "p_value", "q_value", "mean_a", "mean_b", "effect_size"):
        np.testing.assert_array_equal(getattr(one, field), getattr(two, field))
    ref = [roc_auc_score(groups, scores[h]) for h in range(40)]
    np.testing.assert_allclose(one.auroc, ref, atol=1e-12)


# ---------------------------------------------------------------- p-values and BH


@pytest.mark.parametrize(
    ("n_a", "n_b", "decimals"),
    [(200, 300, None), (200, 300, 1), (5, 7, None), (3, 400, None), (1, 1, None), (1, 6, None), (2, 2, None)],
)
def test_p_values_match_scipy_mann_whitney(n_a: int, n_b: int, decimals: int | None) -> None:
    rng = np.random.default_rng(n_a * 1000 + n_b)
    scores = rng.standard_normal((4, n_a + n_b))
    scores[:, :n_a] += 0.4
    if decimals is not None:
        scores = np.round(scores, decimals)
    groups = np.arange(n_a + n_b) < n_a
    stats = auroc_statistics(scores, groups)
    for h in range(4):
        expected = mannwhitneyu(scores[h, :n_a], scores[h, n_a:]).pvalue
        assert stats.p_value[h] == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_benjamini_hochberg_hand_worked() -> None:
    # sorted p: 0.01, 0.02, 0.021, 0.5 -> p*m/rank = 0.04, 0.04, 0.028, 0.5 -> step-up min: .028 .028 .028 .5
    q = benjamini_hochberg([0.5, 0.021, 0.01, 0.02])
    np.testing.assert_allclose(q, [0.5, 0.028, 0.028, 0.028])
    np.testing.assert_allclose(benjamini_hochberg([0.01, 0.04, 0.03, 0.005]), [0.02, 0.04, 0.04, 0.02])
    assert benjamini_hochberg([0.9, 0.95]).tolist() == [0.95, 0.95]
    assert benjamini_hochberg([]).size == 0
    with pytest.raises(InputError, match="p_values"):
        benjamini_hochberg([0.1, float("nan")])


def test_q_values_in_records_are_bh_of_the_run() -> None:
    rng = np.random.default_rng(3)
    img, groups, txt = make_embeddings(rng, 400, 12, 32)
    records = score_hypotheses(img, groups, txt)
    p = np.array([r.p_value for r in records])
    np.testing.assert_allclose([r.q_value for r in records], benjamini_hochberg(p))
    assert records[0].q_value < 0.05  # the planted difference survives correction


# ---------------------------------------------------------------- score_hypotheses


def test_score_hypotheses_records_means_effect_and_sizes() -> None:
    rng = np.random.default_rng(4)
    img, groups, txt = make_embeddings(rng, 500, 7, 24)
    img[~groups] *= 3.0  # cosine ignores scale
    records = score_hypotheses(img, groups, txt)
    assert len(records) == 7 and all(isinstance(r, HypothesisScore) for r in records)
    cos = (img / np.linalg.norm(img, axis=1, keepdims=True)) @ (txt / np.linalg.norm(txt, axis=1, keepdims=True)).T
    for h, rec in enumerate(records):
        a, b = cos[groups, h], cos[~groups, h]
        assert rec.auroc == pytest.approx(roc_auc_score(groups, cos[:, h]), abs=1e-6)
        assert rec.mean_a == pytest.approx(a.mean(), abs=1e-5)
        assert rec.mean_b == pytest.approx(b.mean(), abs=1e-5)
        pooled = np.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2))
        assert rec.effect_size == pytest.approx((a.mean() - b.mean()) / pooled, rel=1e-3)
        assert (rec.n_a, rec.n_b) == (int(groups.sum()), int((~groups).sum()))
        assert rec.ci_low <= rec.auroc <= rec.ci_high
    assert records[0].auroc > 0.7  # the planted hypothesis


def test_very_unequal_groups() -> None:
    rng = np.random.default_rng(5)
    img, _, txt = make_embeddings(rng, 3000, 3, 16)
    groups = np.zeros(3000, dtype=bool)
    groups[:4] = True
    img[:4] += 0.5 * txt[0]
    records = score_hypotheses(img, groups, txt)
    cos = score_matrix(img, txt)
    for h, rec in enumerate(records):
        assert rec.auroc == pytest.approx(roc_auc_score(groups, cos[h]), abs=1e-9)
        auc, var = naive_delong(cos[h, :4].astype(float), cos[h, 4:].astype(float))
        assert rec.ci_high - rec.ci_low == pytest.approx(
            min(1, auc + 1.959963984540054 * var**0.5) - max(0, auc - 1.959963984540054 * var**0.5), abs=1e-9
        )
        # 3000 images is past EXACT_P_MAX_TOTAL: the normal approximation (scipy's 'auto' would go exact)
        expected = mannwhitneyu(cos[h, :4].astype(float), cos[h, 4:].astype(float), method="asymptotic").pvalue
        assert rec.p_value == pytest.approx(expected, rel=1e-9)
        assert (rec.n_a, rec.n_b) == (4, 2996)


def test_tiny_groups_give_defined_results() -> None:
    img = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    txt = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    recs = score_hypotheses(img, np.array([True, False]), txt)
    assert [r.auroc for r in recs] == [1.0, 0.0]
    for r in recs:  # one study per group: DeLong undefined -> the whole interval; exact p = 1
        assert (r.ci_low, r.ci_high) == (0.0, 1.0)
        assert r.p_value == pytest.approx(1.0)
        assert r.effect_size == 0.0  # pooled SD undefined with 0 degrees of freedom
    img2 = np.array([[1, 0], [0.9, 0.1], [0.1, 0.9], [0, 1]], dtype=np.float32)
    rec = score_hypotheses(img2, np.array([True, True, False, False]), txt[:1])[0]
    assert rec.auroc == 1.0 and rec.p_value == pytest.approx(1 / 3)  # exact: 2 of 6 arrangements as extreme
    assert 0.0 <= rec.ci_low <= rec.ci_high <= 1.0


def test_all_identical_scores() -> None:
    img = np.ones((10, 4), dtype=np.float32)
    groups = np.arange(10) < 4
    rec = score_hypotheses(img, groups, np.array([[1.0, 2.0, 3.0, 4.0]]))[0]
    assert rec.auroc == 0.5
    assert (rec.ci_low, rec.ci_high) == (0.5, 0.5)
    assert rec.p_value == 1.0 and rec.q_value == 1.0
    assert rec.effect_size == 0.0
    assert rec.mean_a == pytest.approx(rec.mean_b)


def test_accepts_0_1_groups_and_single_hypothesis_vector() -> None:
    rng = np.random.default_rng(6)
    img, groups, txt = make_embeddings(rng, 50, 1, 8)
    a = score_hypotheses(img, groups.astype(int), txt[0])
    b = score_hypotheses(img, groups, txt)
    assert a == b
    assert score_hypotheses(img, groups, np.zeros((0, 8))) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_embeddings": np.full((4, 3), np.nan)}, "image_embeddings: row 0 has NaN"),
        ({"text_embeddings": np.array([[1.0, np.inf, 0.0]])}, "text_embeddings: row 0"),
        ({"text_embeddings": np.ones((2, 5))}, "dimension 5 does not match"),
        ({"in_group_a": np.zeros(4, dtype=bool)}, "group A is empty"),
        ({"in_group_a": np.ones(4, dtype=bool)}, "group B is empty"),
        ({"in_group_a": np.array([True, False])}, "expected 4 entries"),
        ({"in_group_a": np.array(["a", "b", "a", "b"])}, "must be boolean"),
        ({"image_embeddings": np.zeros((4, 3))}, "zero vector"),
        ({"image_embeddings": np.ones((4, 3, 2))}, "2-D array"),
        ({"contrast_embeddings": np.ones((3, 3))}, "contrast_embeddings: 3 rows"),
    ],
)
def test_bad_input_gives_one_line_errors(kwargs: dict, match: str) -> None:
    args = {
        "image_embeddings": np.eye(4, 3, dtype=np.float32) + 0.1,
        "in_group_a": np.array([True, False, True, False]),
        "text_embeddings": np.ones((2, 3), dtype=np.float32),
    }
    contrast = kwargs.pop("contrast_embeddings", None)
    args.update(kwargs)
    with pytest.raises(InputError, match=match) as err:
        score_hypotheses(
            args["image_embeddings"], args["in_group_a"], args["text_embeddings"], contrast_embeddings=contrast
        )
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- negation-aware scoring


def test_contrast_scores_are_chexzero_pair_softmax() -> None:
    rng = np.random.default_rng(7)
    img = rng.standard_normal((20, 8)).astype(np.float32)
    pos = rng.standard_normal((3, 8)).astype(np.float32)
    neg = rng.standard_normal((3, 8)).astype(np.float32)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    c_pos, c_neg = unit(pos) @ unit(img).T, unit(neg) @ unit(img).T
    expected = np.exp(c_pos) / (np.exp(c_pos) + np.exp(c_neg))
    np.testing.assert_allclose(score_matrix(img, pos, neg), expected, rtol=1e-5)
    groups = np.arange(20) < 9
    recs = score_hypotheses(img, groups, pos, contrast_embeddings=neg)
    for h, r in enumerate(recs):
        assert r.auroc == pytest.approx(roc_auc_score(groups, expected[h]), abs=1e-9)
        assert r.mean_a == pytest.approx(expected[h, groups].mean(), abs=1e-6)


def test_contrast_prompts_rank_x_vs_no_x_better_than_single_prompt() -> None:
    """CLIP-like embeddings: every image has its own similarity offset to all radiology text (a shared
    'chest X-ray' direction of varying strength), and "no X" still mentions X. The single-prompt cosine
    mixes the offset into the score; the pair softmax cancels it."""
    rng = np.random.default_rng(8)
    d, n = 64, 400
    generic, finding, negation = np.linalg.qr(rng.standard_normal((d, 3)))[0].T  # orthonormal directions
    groups = np.arange(n) < n // 2  # A: "X", B: "no X"
    offset = rng.uniform(0.5, 3.0, n)  # per-image similarity to everything radiological
    img = offset[:, None] * generic + 0.5 * groups[:, None] * finding + 0.15 * rng.standard_normal((n, d))
    text_x = 2.0 * generic + 1.0 * finding
    text_no_x = 2.0 * generic + 0.5 * finding + np.sqrt(0.75) * negation  # "no X" still half-says X
    single = score_hypotheses(img, groups, text_x[None])[0].auroc
    paired = score_hypotheses(img, groups, text_x[None], contrast_embeddings=text_no_x[None])[0].auroc
    assert paired > 0.85
    assert paired > single + 0.1


@pytest.mark.parametrize(
    ("text", "finding", "expected"),
    [
        ("pleural effusion", None, "no pleural effusion"),
        ("Large left pleural effusion", None, "no pleural effusion"),
        ("presence of an enlarged heart", None, "normal heart size"),
        ("cardiomegaly", "cardiomegaly", "normal heart size"),
        ("anything", "low_lung_volumes", "normal lung volumes"),
        ("no pneumothorax", None, "pneumothorax"),
        ("normal heart size", None, "cardiomegaly"),
        ("Without pleural effusion.", None, "pleural effusion"),
        ("more prominent hilar vessels", None, "no prominent hilar vessels"),
        ("tortuous aorta", None, "no tortuous aorta"),
    ],
)
def test_automatic_contrast_prompts(text: str, finding: str | None, expected: str) -> None:
    assert contrast_prompt(text, finding) == expected


def test_contrast_for_prefers_the_hypothesis_own_contrast() -> None:
    h = Hypothesis(text="pleural effusion", group="A", contrast="clear costophrenic angles")
    assert contrast_for(h) == "clear costophrenic angles"
    assert contrast_for(Hypothesis(text="x", group="B", finding="pneumothorax")) == "no pneumothorax"
    with pytest.raises(InputError):
        contrast_prompt("  ")


# ---------------------------------------------------------------- evidence


def test_evidence_indices_pick_typical_studies() -> None:
    scores = np.array([[0.9, 0.1, 0.8, 0.2, 0.5, 0.7], [0.9, 0.1, 0.8, 0.2, 0.5, 0.7]])
    groups = np.array([True, True, True, False, False, False])
    ev = evidence_indices(scores, groups, k=2, toward_a=[True, False])
    assert ev[0] == ([0, 2], [3, 4])  # highest A, lowest B
    assert ev[1] == ([1, 2], [5, 4])  # claims B: lowest A, highest B
    auto = evidence_indices(scores, groups, k=10)
    assert auto[0] == ([0, 2, 1], [3, 4, 5])


class LookupTextModel:
    """Texts -> fixed vectors (the interface's text half), counting calls."""

    model_id = "lookup"
    weights_hash = "w"
    preprocess_version = "p"
    logit_scale = 1.0

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table
        self.calls: list[list[str]] = []

    def encode_images(self, images):  # pragma: no cover - not used here
        raise NotImplementedError

    def encode_texts(self, texts):
        self.calls.append(list(texts))
        rows = np.stack([self.table[t] for t in texts]).astype(np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)  # unit rows, as the interface promises


def test_score_texts_embeds_prompts_and_contrasts(tmp_path) -> None:
    from tools.embeddings.cache import EmbeddingCache
    from tools.scoring.engine import score_texts

    rng = np.random.default_rng(9)
    e = np.eye(4)
    model = LookupTextModel(
        {"pleural effusion": e[0] + e[3], "no pleural effusion": e[3], "pneumothorax": e[1], "no pneumothorax": e[2]}
    )
    groups = np.arange(60) < 30
    img = rng.standard_normal((60, 4)) * 0.3 + e[3]
    img[groups] += e[0]
    hyps = [Hypothesis(text="pleural effusion", group="A"), Hypothesis(text="pneumothorax", group="B")]
    cache = EmbeddingCache(tmp_path / "c.sqlite3")
    out = score_texts(model, img, groups, hyps, cache=cache, evidence_k=3)
    assert out.contrasts == ["no pleural effusion", "no pneumothorax"]
    assert out.scores[0].auroc > 0.95 and out.matrix.shape == (2, 60)
    assert 0.0 < out.matrix.min() and out.matrix.max() < 1.0  # pair-softmax probabilities
    assert all(i < 30 for i in out.evidence[0][0]) and all(i >= 30 for i in out.evidence[0][1])
    # hypothesis 2 claims group B: its evidence is the lowest-scoring A and highest-scoring B studies
    margin = out.matrix[1]
    assert margin[out.evidence[1][1][0]] == margin[~groups].max()
    assert margin[out.evidence[1][0][0]] == margin[groups].min()
    single = score_texts(model, img, groups, hyps, cache=cache, negation_aware=False)
    assert single.contrasts == [None, None] and len(model.calls) == 1  # second call served from the text cache
    empty = score_texts(model, img, groups, [])
    assert empty.scores == [] and empty.matrix.shape == (0, 60)
