"""The mini model's quality-gate figures and card, on hand-made embeddings (no weights needed)."""

import numpy as np
import pytest

from evals.mini.card import render_card
from evals.mini.evaluate import presence_confusions
from tools.reports.phrasing import Statement

AXES = {"rib_fracture": 0, "pneumothorax": 1, "pleural_effusion": 2}


def _text(statement: Statement) -> np.ndarray:
    vec = np.zeros(4)
    # the rib-fracture prompt points half-way to pneumothorax: it mistakes pneumothorax images for fractures
    if statement.finding == "rib_fracture" and statement.present:
        vec[[0, 1]] = 1.0
    elif statement.present:
        vec[AXES[statement.finding]] = 1.0
    else:
        vec[3] = 1.0
    return vec


PROMPTS = {k: (_text(Statement(k, True)), _text(Statement(k, False))) for k in AXES}


def _pools(rng: np.random.Generator):
    def images(axis: int, n: int) -> np.ndarray:
        out = rng.normal(0, 0.1, (n, 4))
        out[:, axis] += 1.0
        return out

    embeddings = {f"{k}|moderate": images(axis, 20) for k, axis in AXES.items()}
    truths = {f"{k}|moderate": [{k: {}} for _ in range(20)] for k in AXES}
    # one pneumothorax image also shows a rib fracture (a positive, not a negative): it must be left out
    embeddings["pneumothorax|moderate"][0] = [3.0, 3.0, 0.0, 0.0]
    truths["pneumothorax|moderate"][0] = {"pneumothorax": {}, "rib_fracture": {}}
    return embeddings, truths


def test_presence_confusions_name_the_finding_a_prompt_mistakes_and_skip_images_that_show_it():
    embeddings, truths = _pools(np.random.default_rng(0))
    confusion = presence_confusions(embeddings, truths, PROMPTS, logit_scale=10.0)
    assert set(confusion) == set(AXES)
    assert confusion["rib_fracture"]["pleural_effusion"] == pytest.approx(1.0)
    assert 0.3 < confusion["rib_fracture"]["pneumothorax"] < 0.75  # no better than chance
    assert confusion["pneumothorax"]["rib_fracture"] == pytest.approx(1.0)
    # with the image that shows both counted as a negative, the figure would fall below chance; it is not counted
    rows = dict(truths)
    rows["pneumothorax|moderate"] = [{"pneumothorax": {}} for _ in range(20)]
    counted = presence_confusions(embeddings, rows, PROMPTS, logit_scale=10.0)
    assert counted["rib_fracture"]["pneumothorax"] < confusion["rib_fracture"]["pneumothorax"]


def test_the_card_lists_the_confusions_of_findings_below_target_only():
    embeddings, truths = _pools(np.random.default_rng(0))
    confusion = presence_confusions(embeddings, truths, PROMPTS, logit_scale=10.0)
    figures = {
        "presence_auroc": {
            "rib_fracture": {"moderate": {"single": 0.62, "contrast": 0.55}},
            "pneumothorax": {"moderate": {"single": 0.99, "contrast": 0.99}},
        },
        "presence_confusion": confusion,
    }
    card = render_card({"figures": figures, "training": {}}, 1.0)
    line = next(row for row in card.splitlines() if row.startswith("- rib_fracture: "))
    assert line.index("vs pneumothorax") < line.index("vs pleural_effusion")  # lowest first
    assert not any(row.startswith("- pneumothorax: ") for row in card.splitlines())
