"""The pipeline on real radiographs that packages ship (pydicom-data, pneumonia-model-package), end to end.

What the offline models (trained on simulated images) conclude on them is printed by
``python -m evals.bench.components.bench_real``; these tests check that every stage runs on real images and that a
MONOCHROME1 DICOM is displayed the right way round, not what the models find.
"""

import importlib.util

import numpy as np
import pytest

needs_dicom = pytest.mark.skipif(importlib.util.find_spec("data_store") is None, reason="pydicom-data not installed")
needs_pneumonia = pytest.mark.skipif(
    importlib.util.find_spec("pneumonia_model_package") is None, reason="pneumonia-model-package not installed"
)


@needs_dicom
def test_real_monochrome1_chest_cr_reads_with_dark_lungs_and_is_described():
    import pydicom

    from evals.bench.components.bench_real import chest_dicom
    from tools.data.images import load_image
    from tools.describers.registry import get_describer

    path = chest_dicom()
    assert pydicom.dcmread(path, stop_before_pixels=True).PhotometricInterpretation == "MONOCHROME1"
    image = load_image(path)
    assert image.dtype == np.float32 and 0.0 <= image.min() and image.max() <= 1.0
    h, w = image.shape
    rows = slice(int(0.3 * h), int(0.6 * h))
    mediastinum = image[rows, int(0.45 * w) : int(0.55 * w)].mean()
    lungs = np.mean([image[rows, int(0.2 * w) : int(0.3 * w)].mean(), image[rows, int(0.7 * w) : int(0.8 * w)].mean()])
    assert mediastinum > lungs + 0.1  # inverted: air is dark, the mediastinum and spine bright
    text = get_describer("mini").describe([image], "Describe this chest radiograph.")[0]
    assert text.startswith("FINDINGS: ") and "\nIMPRESSION: " in text


@needs_pneumonia
@pytest.mark.slow
def test_agent_runs_end_to_end_on_real_paediatric_radiographs(tmp_path):
    from agent.context import RunContext
    from evals.bench.components.bench_real import pneumonia_images, write_csv
    from graphs.run import run_agent
    from tools.data.csv_input import load_csv

    images = pneumonia_images()
    assert len(images["normal"]) == 8 and len(images["pneumonia"]) == 8
    loaded = load_csv(write_csv(tmp_path), decode_images=True)
    assert loaded.skipped == [] and not loaded.comparison.report_only
    context = RunContext(run_id="real", run_dir=tmp_path / "real", max_rounds=2)
    result = run_agent(loaded.comparison, context)
    assert result.mode == "images" and (result.n_a, result.n_b) == (8, 8) and result.n_skipped == 0
    assert result.ranked and all(0.0 <= s.score.auroc <= 1.0 for s in result.ranked)
    trace = (tmp_path / "real" / "trace.jsonl").read_text()
    assert '"describe_images"' in trace and '"embed_images"' in trace
    assert (tmp_path / "real" / "report.html").stat().st_size > 10_000  # real thumbnails embedded
