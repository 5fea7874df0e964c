"""The mini model's training pieces: crop labels, loss weights, mask pooling, statement records, save/load."""

import json

import numpy as np
import pytest

from evals.mini.data import MASK_SIZE, pool_mask
from evals.mini.train import (
    crop_truth,
    dense_map_names,
    dense_targets,
    hard_negative_matrix,
    statement_weights,
    truth_matrix,
)
from tools.reports.phrasing import Statement, statement_bank
from tools.vocabulary import PLANTABLE_FINDINGS

KEYS = list(PLANTABLE_FINDINGS)


def _masks(**boxes: tuple[int, int, int, int]) -> np.ndarray:
    masks = np.zeros((len(KEYS), MASK_SIZE, MASK_SIZE), dtype=bool)
    for key, (y0, x0, y1, x1) in boxes.items():
        masks[KEYS.index(key), y0:y1, x0:x1] = True
    return masks


def _crop_labels(truth: dict, masks: np.ndarray, box: tuple[float, float, float, float]) -> dict[Statement, int]:
    statements = statement_bank()
    row = truth_matrix([truth], statements)[0]
    labels = crop_truth(masks, row, statements, box)
    return dict(zip(statements, labels.tolist(), strict=True))


def test_crop_holding_the_finding_labels_it_present():
    truth = {"nodule": {"side": "right", "zone": "upper", "size": "small"}}
    masks = _masks(nodule=(8, 8, 12, 12))  # a nodule in the top-left corner of the frame
    labels = _crop_labels(truth, masks, (0.0, 0.0, 0.5, 0.5))
    assert labels[Statement("nodule", True)] == 1
    assert labels[Statement("nodule", False)] == 0
    # a crop does not show where it was taken from: location and size statements are undecided
    assert labels[Statement("nodule", True, (("side", "right"),))] == -1
    assert labels[Statement("nodule", True, (("size", "small"),))] == -1
    # findings that were not planted are absent in any crop
    assert labels[Statement("pleural_effusion", True)] == 0
    assert labels[Statement("pleural_effusion", False)] == 1


def test_crop_missing_the_finding_labels_it_absent_and_a_cut_finding_undecided():
    truth = {"nodule": {"side": "right", "zone": "upper", "size": "small"}}
    masks = _masks(nodule=(8, 8, 12, 12))
    away = _crop_labels(truth, masks, (0.5, 0.5, 1.0, 1.0))
    assert away[Statement("nodule", True)] == 0
    assert away[Statement("nodule", False)] == 1
    cut = _crop_labels(truth, masks, (0.0, 11 / MASK_SIZE, 0.5, 0.6))  # one of the nodule's four columns
    assert cut[Statement("nodule", True)] == -1
    assert cut[Statement("nodule", False)] == -1


def test_a_large_finding_filling_part_of_the_crop_is_present():
    truth = {"pleural_effusion": {"side": "right", "size": "large"}}
    masks = _masks(pleural_effusion=(20, 0, 48, 24))  # the whole lower left quarter and more
    labels = _crop_labels(truth, masks, (0.75, 0.0, 1.0, 0.25))  # the base: a fifth of the effusion, filling it
    assert labels[Statement("pleural_effusion", True)] == 1
    edge = _crop_labels(truth, masks, (0.0, 0.0, 0.45, 0.45))  # two rows of it at the crop's lower edge
    assert edge[Statement("pleural_effusion", True)] == -1


def test_a_device_counts_as_present_with_a_quarter_of_its_length_in_the_crop():
    truth = {"endotracheal_tube": {"tip": "above_carina"}}
    masks = _masks(endotracheal_tube=(0, 20, 40, 22))  # a long vertical tube
    labels = _crop_labels(truth, masks, (0.0, 0.25, 12 / MASK_SIZE, 0.75))  # 12 of its 40 rows
    assert labels[Statement("endotracheal_tube", True)] == 1


def test_statement_weights_balance_positives_and_negatives_and_favour_hard_negatives():
    rng = np.random.default_rng(0)
    statements = [
        Statement("pleural_effusion", True),
        Statement("pleural_effusion", False),
        Statement("pleural_effusion", True, (("side", "left"),)),
    ]
    truths = []
    for _ in range(400):
        r = rng.random()
        truths.append({} if r < 0.8 else {"pleural_effusion": {"side": "left" if r < 0.9 else "right"}})
    truth = truth_matrix(truths, statements)
    hard = hard_negative_matrix(truths, statements, truth)
    assert hard[:, 2].sum() > 0 and not hard[:, :2].any()  # right-sided effusions for "left pleural effusion"
    weights, sides = statement_weights(truth, hard, cap=100.0, hard_share=0.5)
    for j in range(3):
        pos, neg = truth[:, j] == 1, truth[:, j] == 0
        assert weights[pos, j].sum() == pytest.approx(weights[neg, j].sum(), rel=1e-5)
    neg2 = truth[:, 2] == 0
    assert weights[hard[:, 2], 2].sum() == pytest.approx(0.5 * weights[neg2, 2].sum(), rel=1e-5)
    assert weights[hard[:, 2], 2].mean() > 3 * weights[neg2 & ~hard[:, 2], 2].mean()
    assert sides.shape == (2, 3) and (sides > 0).all()


def test_statement_weights_cap_a_rare_side():
    truth = np.array([[1]] + [[0]] * 99, dtype=np.int8)
    weights, _ = statement_weights(truth, np.zeros_like(truth, dtype=bool), cap=10.0, hard_share=0.5)
    assert weights[0, 0] == pytest.approx(10 * weights[1, 0])


def test_pool_mask_keeps_any_pixel_of_a_block():
    mask = np.zeros((96, 96), dtype=bool)
    mask[50, 3] = True
    pooled = pool_mask(mask, 48)
    assert pooled.shape == (48, 48)
    assert pooled.sum() == 1 and pooled[25, 1]


def test_dense_targets_map_each_finding_and_each_device_by_its_tip():
    truth = {"enteric_tube": {"tip": "esophagus_coiled"}, "nodule": {"side": "left", "zone": "mid", "size": "small"}}
    masks = _masks(enteric_tube=(0, 20, 30, 24))  # the nodule is planted but shows nowhere (empty mask)
    maps, valid = dense_targets(masks, truth)
    names = dense_map_names()
    assert maps.shape == (len(names), MASK_SIZE, MASK_SIZE) and valid.shape == (len(names),)
    tube = names.index("enteric_tube")
    assert maps[tube].sum() == 30 * 4
    np.testing.assert_array_equal(maps[names.index("enteric_tube:tip=esophagus_coiled")], maps[tube])
    assert not maps[names.index("enteric_tube:tip=stomach")].any()
    assert not maps[names.index("picc:tip=low_svc")].any()  # no PICC: its maps are known to be empty
    assert valid[names.index("picc:tip=low_svc")] and valid[names.index("pleural_effusion")]
    assert not valid[names.index("nodule")]  # planted but not located: unknown, not "absent"
    assert {n for n in names if ":tip=" in n} == {
        f"{k}:tip={v}" for k, f in PLANTABLE_FINDINGS.items() for v in f.attributes.get("tip", ())
    }


def test_pool_mask_pools_a_stack_of_maps_and_rejects_a_too_small_one():
    maps = np.zeros((3, 48, 48), dtype=bool)
    maps[1, 47, 0] = True
    pooled = pool_mask(maps, 12)
    assert pooled.shape == (3, 12, 12) and pooled.sum() == 1 and pooled[1, 11, 0]
    with pytest.raises(ValueError, match="smaller than the pooled size"):
        pool_mask(maps[:, :10, :10], 12)


def test_statement_record_round_trip():
    for statement in statement_bank():
        record = json.loads(json.dumps(statement.to_record()))
        assert Statement.from_record(record) == statement


@pytest.mark.slow
def test_a_tiny_training_run_saves_weights_that_load_with_their_statement_and_dense_heads(tmp_path):
    import torch

    from evals.mini.train import TrainConfig, train_mini
    from tools.scorers.mini import load_mini, preprocess_images

    config = TrainConfig(n_images=6, steps=2, batch_size=4, crop_fraction=0.5)
    config.model.update(image_size=48, widths=[4, 8, 8, 8], embed_dim=16, text_hidden=32)
    record = train_mini(tmp_path / "weights", config, tmp_path / "cache", progress=False)
    assert record["training"]["steps"] == 2 and np.isfinite(record["training"]["final_loss"])
    model = load_mini(tmp_path / "weights")
    assert model.config["dense_channels"] == len(record["dense_maps"]) == len(dense_map_names())
    with torch.inference_mode():
        _, dense = model.module.image_tower.forward_dense(torch.zeros(2, 1, 48, 48))
    assert dense.shape == (2, len(dense_map_names()), 3, 3)  # the stride-16 grid of a 48 px input
    assert len(model.statements) == record["model"]["n_statements"] == len(statement_bank())
    images = [np.random.default_rng(i).random((60, 50)).astype(np.float32) for i in range(3)]
    known = [Statement("pleural_effusion", True), Statement("pleural_effusion", False)]
    head = model.statement_logits(images, known)
    with torch.inference_mode():
        features = model.module.image_tower(torch.from_numpy(preprocess_images(images, 48)))
        expected = model.module.statement_head(features).numpy()[:, [model.statements.index(s) for s in known]]
    np.testing.assert_allclose(head, expected, rtol=1e-4, atol=1e-5)
    # a statement the head was not trained on (three attributes) is scored zero-shot from its phrase
    unknown = Statement("nodule", True, (("side", "left"), ("zone", "upper"), ("size", "small")))
    assert unknown not in model.statements
    zero_shot = model.encode_images(images) @ model.encode_texts([unknown.phrase()]).T
    np.testing.assert_allclose(
        model.statement_logits(images, [unknown]), zero_shot * model.logit_scale + model.logit_bias, atol=1e-4
    )
    # image_evidence reads the statement head and each dense map's peak in one pass
    assert model.dense_maps == dense_map_names()
    with torch.inference_mode():
        _, maps = model.module.image_tower.forward_dense(torch.from_numpy(preprocess_images(images, 48)))
    logits, peaks = model.image_evidence(images, known)
    np.testing.assert_allclose(peaks, maps.amax(dim=(2, 3)).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits, head, rtol=1e-5, atol=1e-6)
    _check_describer_calibration(model, images)


def _check_describer_calibration(model, images) -> None:
    """Calibration stores each decision component's statistics; the describer decides on their standardised mean."""
    from evals.mini.evaluate import calibrate_describer
    from tools.describers.mini import DescriberCalibration, MiniDescriber
    from tools.domain import InputError

    images = images * 4
    truths = [{"pleural_effusion": {"side": "left"}} if i % 3 == 0 else {} for i in range(len(images))]
    calibration = calibrate_describer(model, np.stack(images), truths)
    assert calibration.fusion is not None and set(calibration.thresholds) == {"pleural_effusion"}
    assert DescriberCalibration.from_record(json.loads(json.dumps(calibration.to_record()))) == calibration
    contrast, dense, _ = MiniDescriber(model).component_scores(images)
    assert dense is not None
    j = KEYS.index("pleural_effusion")
    (m_s, sd_s), (m_d, sd_d) = (
        calibration.fusion["statement"]["pleural_effusion"],
        calibration.fusion["dense"]["pleural_effusion"],
    )
    assert m_s == pytest.approx(contrast[:, j].mean(), abs=1e-5) and m_d == pytest.approx(dense[:, j].mean(), abs=1e-5)
    expected = ((contrast[:, j] - m_s) / sd_s + (dense[:, j] - m_d) / sd_d) / 2
    fused = MiniDescriber(model, calibration).decision_scores(images)
    np.testing.assert_allclose(fused[:, j], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(MiniDescriber(model).decision_scores(images), contrast)  # no statistics: contrast alone
    # descriptions are cached by the describer's model id: another calibration gives another id
    assert MiniDescriber(model).model_id == model.model_id
    assert MiniDescriber(model, calibration).model_id.startswith(model.model_id + "+calibration@")
    other = DescriberCalibration({"pleural_effusion": 0.5}, calibration.fusion)
    assert MiniDescriber(model, other).model_id != MiniDescriber(model, calibration).model_id
    # statistics that do not cover the vocabulary (a calibration from an older vocabulary) are refused
    partial = {part: {"pleural_effusion": stats["pleural_effusion"]} for part, stats in calibration.fusion.items()}
    with pytest.raises(InputError, match="no fusion statistics for .*cardiomegaly"):
        MiniDescriber(model, DescriberCalibration(calibration.thresholds, partial))


def test_batches_carry_dense_targets_and_leave_tip_maps_unknown_on_crops():
    from evals.mini.data import ImagePool
    from evals.mini.train import TrainConfig, _prepare

    truth = {"enteric_tube": {"tip": "stomach"}}
    masks = np.stack([_masks(enteric_tube=(0, 20, 40, 24))] * 4)
    images = np.random.default_rng(0).integers(0, 255, (4, 96, 96), dtype=np.uint8)
    pool = ImagePool(images, [truth] * 4, [{}] * 4, [0, 1, 2, 3], masks)
    config = TrainConfig(batch_size=4, crop_fraction=0.5, decimate_fraction=0.0)
    data = _prepare(pool, 48, statement_bank(), config)
    batch = data.sample(config, np.random.default_rng(1))
    names = dense_map_names()
    assert batch.dense.shape == (4, len(names), 3, 3) and batch.pixels.shape == (4, 1, 48, 48)
    tips = [c for c, n in enumerate(names) if ":tip=" in n]
    assert not batch.dense_valid[:2][:, tips].any()  # the two crops
    assert batch.dense_valid[2:].all()  # whole images: every map known
    whole = pool_mask(dense_targets(masks[0], truth)[0], 3).astype(np.float32)
    np.testing.assert_array_equal(batch.dense[2], whole)
    assert batch.dense[2, names.index("enteric_tube:tip=stomach")].any()
    assert (data.dense_pos_weight(cap=30.0) >= 1.0).all()
