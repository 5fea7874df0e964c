"""A reduced quality gate of the committed mini model on freshly rendered SynthCXR images (unseen seeds)."""

import numpy as np
import pytest

from tests.conftest import requires_mini_weights
from tools.reports.phrasing import Statement
from tools.scorers.mini import load_mini

pytestmark = [pytest.mark.slow, requires_mini_weights]

SEED = 123_456_789  # far from the training (1e6..), calibration (5e6..) and evaluation (9e6..) seed ranges


def _auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    return float(np.mean(pos[:, None] > neg[None, :]) + 0.5 * np.mean(pos[:, None] == neg[None, :]))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    from evals.synth.findings import PlantedFinding
    from evals.synth.render import render_sample

    cache = tmp_path_factory.getbasetemp() / "synth-cache"
    findings = {
        "pleural_effusion": {"side": "right", "size": "moderate"},
        "pneumothorax": {"side": "left", "size": "moderate"},
        "pacemaker": {"leads": "2"},
    }
    out = {}
    for key, attrs in findings.items():
        out[key] = [
            render_sample(
                [PlantedFinding(finding=key, attributes=attrs)],
                seed=SEED + i,
                size=192,
                with_report=False,
                cache_dir=cache,
            ).image
            for i in range(8)
        ]
    out["normal"] = [
        render_sample([], seed=SEED + 100 + i, size=192, with_report=False, cache_dir=cache).image for i in range(8)
    ]
    return out


def test_presence_and_negation_on_unseen_images(rendered):
    model = load_mini()
    normal = model.encode_images([im.astype(np.float32) / 255 for im in rendered["normal"]])
    for key in ("pleural_effusion", "pneumothorax", "pacemaker"):
        emb = model.encode_images([im.astype(np.float32) / 255 for im in rendered[key]])
        pos_t, neg_t = model.encode_texts([Statement(key).phrase(), Statement(key, present=False).phrase()])
        direction = pos_t - neg_t  # the contrast pair
        assert _auroc(emb @ direction, normal @ direction) >= 0.9, key
    eff = model.encode_images([im.astype(np.float32) / 255 for im in rendered["pleural_effusion"]])
    pos_t, neg_t = model.encode_texts(["pleural effusion", "no pleural effusion"])
    assert np.mean(eff @ neg_t < eff @ pos_t) >= 0.75  # negation; the full gate's figure is in the model card


def test_describer_names_the_effusion(rendered):
    from tools.describers.mini import load_mini_describer

    describer = load_mini_describer()
    assert describer.calibration.fusion is not None  # the committed pack decides on both heads
    texts = describer.describe([im.astype(np.float32) / 255 for im in rendered["pleural_effusion"]], "describe")
    assert sum("pleural effusion" in t.split("IMPRESSION")[1].lower() for t in texts) >= 6
    normal = describer.describe([im.astype(np.float32) / 255 for im in rendered["normal"]], "describe")
    assert sum("No acute cardiopulmonary process" in t for t in normal) >= 3
