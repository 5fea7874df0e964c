"""Localisation accuracy of :func:`tools.regions.anatomy.locate_anatomy` + :func:`tools.regions.boxes.region_box`
on SynthCXR.

For each case a finding is planted (SynthCXR gives its mask in image space, the ground truth) and the
region box the finding belongs to is computed from the image alone. A case is a *hit* when the part of
the mask that defines the finding's place lies inside the box:

* nodule (small, each side and zone): at least half of the mask in ``{zone}_zone_{side}``;
* pleural effusion (small): at least half of the meniscus (top tenth of the mask rows, lateral half of
  the mask's columns) in ``costophrenic_angle_{side}``;
* pneumothorax (small): at least half of the top tenth of the mask rows (the apical pleural gap) in
  ``apex_{side}``;
* endotracheal tube: the tip (lowest mask pixel) in ``trachea_carina``;
* enteric tube in the stomach: the tip in ``upper_abdomen``;
* cardiomegaly: at least half of the heart's mask in ``cardiac_silhouette``.

Wrong-side rate: for sided cases, the same test against the *other* side's box (should be ~0).
Prints hit rates per case and view (PA / AP), the detection method counts and the mean box area.

Run: ``python -m evals.bench.components.bench_regions [--seeds 20] [--size 256]``
"""

from __future__ import annotations

import argparse
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tools.regions.anatomy import Anatomy, locate_anatomy
from tools.regions.boxes import region_box

Mask = np.ndarray


@dataclass(frozen=True)
class Case:
    """One localisation case: what to plant, which region must hold it, how to test the mask."""

    name: str
    finding: str
    attributes: dict[str, str]
    region: str
    test: str  # "fraction" | "meniscus" | "top_rows" | "tip"
    other_region: str | None = None


def default_cases() -> list[Case]:
    """The cases of the benchmark (sided cases carry the opposite side's region)."""
    cases: list[Case] = []
    for side, other in (("right", "left"), ("left", "right")):
        for zone in ("upper", "mid", "lower"):
            cases.append(
                Case(
                    f"nodule {side} {zone}",
                    "nodule",
                    {"side": side, "zone": zone, "size": "small"},
                    f"{zone}_zone_{side}",
                    "fraction",
                    f"{zone}_zone_{other}",
                )
            )
        cases.append(
            Case(
                f"effusion {side}",
                "pleural_effusion",
                {"side": side, "size": "small"},
                f"costophrenic_angle_{side}",
                "meniscus",
                f"costophrenic_angle_{other}",
            )
        )
        cases.append(
            Case(
                f"pneumothorax {side}",
                "pneumothorax",
                {"side": side, "size": "small"},
                f"apex_{side}",
                "top_rows",
                f"apex_{other}",
            )
        )
    cases.append(Case("ETT above carina", "endotracheal_tube", {"tip": "above_carina"}, "trachea_carina", "tip"))
    cases.append(
        Case("ETT right main bronchus", "endotracheal_tube", {"tip": "right_main_bronchus"}, "trachea_carina", "tip")
    )
    cases.append(Case("enteric tube stomach", "enteric_tube", {"tip": "stomach"}, "upper_abdomen", "tip"))
    cases.append(Case("cardiomegaly", "cardiomegaly", {"severity": "moderate"}, "cardiac_silhouette", "fraction"))
    return cases


def _box_mask(box: tuple[float, float, float, float], shape: tuple[int, int]) -> Mask:
    h, w = shape
    y0, x0, y1, x1 = box
    out = np.zeros(shape, bool)
    out[int(np.floor(y0 * h)) : int(np.ceil(y1 * h)), int(np.floor(x0 * w)) : int(np.ceil(x1 * w))] = True
    return out


def _part(mask: Mask, test: str) -> Mask:
    rows = np.flatnonzero(mask.any(axis=1))
    part = np.zeros_like(mask)
    if test == "fraction":
        return mask
    if test == "meniscus":
        cut = rows[0] + max((rows[-1] - rows[0] + 1) // 10, 1)
        part[:cut] = mask[:cut]
        cols = np.flatnonzero(mask.any(axis=0))
        centre = (cols[0] + cols[-1]) // 2
        lateral_left = centre < mask.shape[1] // 2  # patient's right: lateral is the image's left
        if lateral_left:
            part[:, centre:] = False
        else:
            part[:, : centre + 1] = False
        return part
    if test == "top_rows":
        cut = rows[0] + max((rows[-1] - rows[0] + 1) // 10, 1)
        part[:cut] = mask[:cut]
        return part
    if test == "tip":
        r = rows[-1]
        cols = np.flatnonzero(mask[r])
        part[r, cols[len(cols) // 2]] = True
        return part
    raise ValueError(f"unknown test {test!r}")


def inside_fraction(mask: Mask, test: str, anatomy: Anatomy, region: str) -> float:
    """Fraction of the defining part of ``mask`` inside the region's box."""
    part = _part(mask, test)
    box = _box_mask(region_box(anatomy, region), mask.shape)
    return float((part & box).sum() / max(part.sum(), 1))


def run_cases(
    cases: list[Case],
    seeds: range,
    size: int = 256,
    views: tuple[str, ...] = ("PA", "AP"),
    cache_dir: Path | None = None,
) -> list[dict[str, object]]:
    """Plant every case on every seed and view; one record per image (hit, wrong side, method, area)."""
    from evals.synth.findings import PlantedFinding
    from evals.synth.render import render_sample

    records: list[dict[str, object]] = []
    for case in cases:
        finding = PlantedFinding(finding=case.finding, attributes=case.attributes)
        for view in views:
            for seed in seeds:
                sample = render_sample(
                    [finding], seed=seed, size=size, view=view, with_report=False, cache_dir=cache_dir
                )
                mask = sample.region_masks[case.finding]
                if not mask.any():
                    continue
                anatomy = locate_anatomy(sample.image.astype(np.float32) / 255.0)
                frac = inside_fraction(mask, case.test, anatomy, case.region)
                wrong = inside_fraction(mask, case.test, anatomy, case.other_region) if case.other_region else None
                y0, x0, y1, x1 = region_box(anatomy, case.region)
                records.append(
                    {
                        "case": case.name,
                        "view": view,
                        "seed": seed,
                        "fraction": frac,
                        "hit": frac >= 0.5,
                        "wrong_side": None if wrong is None else wrong >= 0.5,
                        "method": anatomy.method,
                        "area": (y1 - y0) * (x1 - x0),
                    }
                )
    return records


def main(argv: list[str] | None = None) -> None:
    """Print hit rates per case and view."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="seeds per case and view")
    parser.add_argument("--size", type=int, default=256, help="rendered image size")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    records = run_cases(default_cases(), range(1000, 1000 + args.seeds), size=args.size)
    by: dict[tuple[str, str], list[dict[str, object]]] = defaultdict(list)
    for rec in records:
        by[(str(rec["case"]), str(rec["view"]))].append(rec)
    print(f"{'case':28s} {'view':4s} {'n':>3s} {'hit':>6s} {'mean frac':>9s} {'wrong side':>10s} {'box area':>8s}")
    for (case, view), recs in by.items():
        hits = np.mean([bool(r["hit"]) for r in recs])
        frac = np.mean([float(r["fraction"]) for r in recs])  # type: ignore[arg-type]
        wrong_vals = [bool(r["wrong_side"]) for r in recs if r["wrong_side"] is not None]
        wrong = f"{np.mean(wrong_vals):10.2f}" if wrong_vals else f"{'-':>10s}"
        area = np.mean([float(r["area"]) for r in recs])  # type: ignore[arg-type]
        print(f"{case:28s} {view:4s} {len(recs):3d} {hits:6.2f} {frac:9.2f} {wrong} {area:8.3f}")
    for view in ("PA", "AP"):
        recs = [r for r in records if r["view"] == view]
        print(f"overall {view}: hit rate {np.mean([bool(r['hit']) for r in recs]):.3f} over {len(recs)} images")
    methods = Counter(str(r["method"]) for r in records)
    print("anatomy method:", dict(methods))
    print(f"{len(records)} images in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
