"""Localize-and-zoom on SynthCXR: AUROC of a hypothesis on full frames vs on crops of its region.

For small localized findings (a small nodule in a fixed zone, a small pneumothorax, the position of a
tube tip) the finding is a tiny part of the full frame; cropping its region from the original image
(:func:`tools.regions.zoom_experiment`) gives the scorer many more pixels of it. Groups: A has the
finding (or tip position), B does not (or has the other tip position); different seeds, PA and AP mixed.

Scorers:

* the project's mini CLIP model when its weights exist (``tools/weights/mini-cxr-clip.safetensors``),
  scoring the hypothesis text by cosine similarity;
* always, a fixed, untrained local-contrast statistic (:func:`local_contrast_embed`): the strength of
  the most conspicuous bright round spot (a multi-scale blob detector) on the image resized to
  128 x 128. It knows nothing of any finding; zoom helps it only because the lesion covers more of the
  crop and fewer distracting structures are in view. It is a weak detector: for findings that are not
  bright spots (pneumothorax, tube tips) its figures only show whether the crop holds the difference.

Prints one row per case and scorer: AUROC full frame, AUROC zoomed, and the difference.

Run: ``python -m evals.benchmarks.bench_zoom [--n 30] [--size 512]``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tools.regions import zoom_experiment

EMBED_SIZE = 128
"""Side to which the local-contrast scorer resizes every image (full frame or crop)."""


def local_contrast_statistic(image: np.ndarray, size: int = EMBED_SIZE) -> float:
    """Strength of the most conspicuous bright round spot: the largest scale-normalised determinant of
    the Hessian over bright blobs (both curvatures negative), at scales 1 to 4 pixels, in units of the
    image's contrast.

    The image is resized to ``size x size`` first, so a full frame and a crop are judged at the same
    resolution. It is a generic blob detector: nothing in it is tuned to a finding or a region.
    """
    from PIL import Image
    from scipy import ndimage

    arr = np.asarray(image, dtype=np.float32)
    pil = Image.fromarray(arr, mode="F").resize((size, size), Image.Resampling.BILINEAR)
    small = np.asarray(pil, dtype=np.float32)
    contrast = float(small.std()) + 1e-6
    best = 0.0
    for sigma in (1.0, 1.5, 2.0, 3.0, 4.0):
        lxx = ndimage.gaussian_filter(small, sigma, order=(0, 2))
        lyy = ndimage.gaussian_filter(small, sigma, order=(2, 0))
        lxy = ndimage.gaussian_filter(small, sigma, order=(1, 1))
        doh = sigma**4 * (lxx * lyy - lxy**2) * ((lxx < 0) & (lyy < 0)) / contrast**2
        best = max(best, float(doh[4:-4, 4:-4].max()))
    return best


def local_contrast_embed(images: Sequence[np.ndarray]) -> np.ndarray:
    """A 2-D "embedding" ``(statistic, 1)`` per image; its cosine with ``(1, 0)`` rises with the statistic."""
    stats = np.array([local_contrast_statistic(im) for im in images], dtype=np.float32)
    return np.stack([stats, np.ones_like(stats)], axis=1)


LOCAL_CONTRAST_TEXT = np.array([1.0, 0.0], dtype=np.float32)
"""The hypothesis direction for :func:`local_contrast_embed`: a more conspicuous bright spot."""


@dataclass(frozen=True)
class ZoomCase:
    """Group A and group B plantings, the region to zoom into and the hypothesis text."""

    name: str
    finding_a: tuple[str, dict[str, str]]
    finding_b: tuple[str, dict[str, str]] | None
    region: str
    text: str


def default_cases() -> list[ZoomCase]:
    """Small nodule (its zone), small pneumothorax (its apex), ETT and enteric tube tip positions."""
    return [
        ZoomCase(
            "small nodule, right upper zone",
            ("nodule", {"side": "right", "zone": "upper", "size": "small"}),
            None,
            "upper_zone_right",
            "small right upper zone pulmonary nodule",
        ),
        ZoomCase(
            "small nodule, left mid zone",
            ("nodule", {"side": "left", "zone": "mid", "size": "small"}),
            None,
            "mid_zone_left",
            "small left mid zone pulmonary nodule",
        ),
        ZoomCase(
            "small pneumothorax, left",
            ("pneumothorax", {"side": "left", "size": "small"}),
            None,
            "apex_left",
            "small left pneumothorax",
        ),
        ZoomCase(
            "ETT tip: right main bronchus vs above carina",
            ("endotracheal_tube", {"tip": "right_main_bronchus"}),
            ("endotracheal_tube", {"tip": "above_carina"}),
            "trachea_carina",
            "endotracheal tube with the tip in the right main bronchus",
        ),
        ZoomCase(
            "enteric tube tip: stomach vs coiled in esophagus",
            ("enteric_tube", {"tip": "stomach"}),
            ("enteric_tube", {"tip": "esophagus_coiled"}),
            "upper_abdomen",
            "enteric tube with the tip in the stomach",
        ),
    ]


def render_groups(
    case: ZoomCase, n: int, size: int, seed0: int = 5000, cache_dir: Path | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` images per group (different seeds, PA and AP mixed) as canonical float arrays."""
    from evals.synth.findings import PlantedFinding
    from evals.synth.render import render_sample

    def planted(spec: tuple[str, dict[str, str]] | None) -> list[PlantedFinding]:
        return [] if spec is None else [PlantedFinding(finding=spec[0], attributes=spec[1])]

    def group(spec: tuple[str, dict[str, str]] | None, offset: int) -> list[np.ndarray]:
        out = []
        for i in range(n):
            view = "PA" if i % 2 == 0 else "AP"
            sample = render_sample(
                planted(spec), seed=seed0 + offset + i, size=size, view=view, with_report=False, cache_dir=cache_dir
            )
            out.append(sample.image.astype(np.float32) / 255.0)
        return out

    return group(case.finding_a, 0), group(case.finding_b, 10_000)


def _scorers() -> list[tuple[str, Callable[[list[np.ndarray]], np.ndarray], Callable[[str], np.ndarray]]]:
    from tools.backends.mini import weights_dir

    scorers: list[tuple[str, Callable[[list[np.ndarray]], np.ndarray], Callable[[str], np.ndarray]]] = []
    weights = weights_dir() / "mini-cxr-clip.safetensors"
    if weights.exists():
        from tools.backends.mini import load_mini

        model = load_mini()
        scorers.append(("mini CLIP", lambda ims: model.encode_images(ims), lambda text: model.encode_texts([text])[0]))
    else:
        print(f"mini CLIP weights missing ({weights}): local-contrast scorer only")
    scorers.append(("local contrast", local_contrast_embed, lambda _text: LOCAL_CONTRAST_TEXT))
    return scorers


def main(argv: list[str] | None = None) -> None:
    """Print the before/after table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=30, help="images per group")
    parser.add_argument("--size", type=int, default=512, help="rendered (original) image size")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    scorers = _scorers()
    print("separation = max(AUROC, 1 - AUROC): how well the score tells the groups apart in either direction")
    header = f"{'case':50s} {'scorer':15s} {'region':18s} {'AUROC full':>10s} {'zoomed':>7s} {'delta':>7s}"
    print(f"{header} {'separation full':>15s} {'zoomed':>7s}")
    for case in default_cases():
        images_a, images_b = render_groups(case, args.n, args.size)
        for name, embed, text_fn in scorers:
            full, zoomed = zoom_experiment(embed, text_fn(case.text), images_a, images_b, case.region)
            sep_full, sep_zoom = max(full, 1 - full), max(zoomed, 1 - zoomed)
            print(
                f"{case.name:50s} {name:15s} {case.region:18s} {full:10.3f} {zoomed:7.3f} {zoomed - full:+7.3f}"
                f" {sep_full:15.3f} {sep_zoom:7.3f}"
            )
    print(f"{args.n} vs {args.n} images per case at {args.size} px; {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
