"""Localize-and-zoom on SynthCXR: AUROC of a hypothesis on full frames vs on crops of its region.

For small localized findings (a small nodule in a fixed zone, a small pneumothorax, the position of a
tube tip) the finding is a tiny part of the full frame; cropping its region from the original image
(:func:`evals.bench.components.bench_zoom.zoom_experiment`) gives the scorer many more pixels of it. Groups: A has the
finding (or tip position), B does not (or has the other tip position); different seeds, PA and AP mixed.

Scorers:

* the project's mini CLIP model when its weights exist (``tools/weights/mini-cxr-clip.safetensors``),
  scoring the hypothesis as the agent does: the contrast pair (hypothesis vs its negation), and on crops the
  agent's crop wording (:func:`tools.reports.phrasing.crop_wording`: no side, zone or size, which a crop cannot show);
* always, a fixed, untrained local-contrast statistic (:func:`local_contrast_embed`): the strength of
  the most conspicuous bright round spot (a multi-scale blob detector) on the image resized to
  128 x 128. It knows nothing of any finding; zoom helps it only because the lesion covers more of the
  crop and fewer distracting structures are in view. It is a weak detector: for findings that are not
  bright spots (pneumothorax, tube tips) its figures only show whether the crop holds the difference.

Prints one row per case and scorer: AUROC full frame, AUROC zoomed, and the difference.

Run: ``python -m evals.bench.components.bench_zoom [--n 30] [--size 512]``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tools.domain import Hypothesis, InputError
from tools.regions.anatomy import DEFAULT_CROP_SIZE, DEFAULT_MARGIN
from tools.regions.crops import crop_region

EMBED_SIZE = 128
"""Side to which the local-contrast scorer resizes every image (full frame or crop)."""
EmbedFn = Callable[[list[np.ndarray]], np.ndarray]


def zoom_experiment(
    embed_fn: EmbedFn,
    text_embedding: np.ndarray,
    images_a: Sequence[np.ndarray],
    images_b: Sequence[np.ndarray],
    region: str | Sequence[float],
    *,
    out_size: int = DEFAULT_CROP_SIZE,
    margin: float = DEFAULT_MARGIN,
    crop_text_embedding: np.ndarray | None = None,
) -> tuple[float, float]:
    """AUROC of "in group A" for one hypothesis on the full frames and on the region crops.

    ``embed_fn`` maps a list of float images to (N, D) embeddings; ``text_embedding`` (D,) is the
    hypothesis, and ``crop_text_embedding`` its wording on crops when that differs (the agent drops what a
    crop cannot show, such as the side). The full frames are resized to the crops' resolution by ``embed_fn``
    itself, so the only difference between the two scores is where the pixels come from. Returns
    ``(auroc_full, auroc_zoomed)``.
    """
    from tools.scoring.engine import score_hypotheses

    if not images_a or not images_b:
        raise InputError("zoom experiment: both groups need at least one image")
    images = [np.asarray(im, dtype=np.float32) for im in (*images_a, *images_b)]
    groups = np.array([True] * len(images_a) + [False] * len(images_b))
    text = np.asarray(text_embedding, dtype=np.float32).reshape(1, -1)
    crop_text = text if crop_text_embedding is None else np.asarray(crop_text_embedding, np.float32).reshape(1, -1)
    full = np.asarray(embed_fn(images), dtype=np.float32)
    crops = [crop_region(im, region, out_size, margin=margin) for im in images]
    zoomed = np.asarray(embed_fn(crops), dtype=np.float32)
    auroc_full = score_hypotheses(full, groups, text)[0].auroc
    auroc_zoomed = score_hypotheses(zoomed, groups, crop_text)[0].auroc
    return auroc_full, auroc_zoomed


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

    def hypothesis(self) -> Hypothesis:
        """The case's hypothesis (group A's finding and attributes, worded as :attr:`text`)."""
        return Hypothesis(text=self.text, group="A", finding=self.finding_a[0], attributes=dict(self.finding_a[1]))


def default_cases() -> list[ZoomCase]:
    """Small nodule (its zone), small pneumothorax (its apex), tube and catheter tip positions, a rib fracture."""
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
        ZoomCase(
            "CVC tip: cavoatrial junction vs too high",
            ("central_venous_catheter", {"tip": "cavoatrial_junction"}),
            ("central_venous_catheter", {"tip": "too_high"}),
            "mediastinum",
            "central venous catheter with the tip at the cavoatrial junction",
        ),
        ZoomCase(
            "displaced fracture of the right 6th rib",
            ("rib_fracture", {"side": "right", "rib": "6"}),
            None,
            "mid_zone_right",
            "right rib fracture",
        ),
    ]


def render_groups(
    case: ZoomCase,
    n: int,
    size: int,
    seed0: int = 5000,
    cache_dir: Path | None = None,
    background: bool = False,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` images per group (different seeds, PA and AP mixed) as canonical float arrays; with ``background``
    every study also gets SynthDiffBench's random background findings (the same mix in both groups)."""
    from evals.synth.bench import random_findings
    from evals.synth.findings import PlantedFinding
    from evals.synth.render import render_sample

    def planted(spec: tuple[str, dict[str, str]] | None, seed: int) -> list[PlantedFinding]:
        own = [] if spec is None else [PlantedFinding(finding=spec[0], attributes=spec[1])]
        if not background:
            return own
        return own + random_findings(np.random.default_rng([seed, 17]), exclude={case.finding_a[0]})

    def group(spec: tuple[str, dict[str, str]] | None, offset: int) -> list[np.ndarray]:
        out = []
        for i in range(n):
            view = "PA" if i % 2 == 0 else "AP"
            seed = seed0 + offset + i
            sample = render_sample(
                planted(spec, seed), seed=seed, size=size, view=view, with_report=False, cache_dir=cache_dir
            )
            out.append(sample.image.astype(np.float32) / 255.0)
        return out

    return group(case.finding_a, 0), group(case.finding_b, 10_000)


TextFn = Callable[[Hypothesis], tuple[np.ndarray, np.ndarray]]
"""Hypothesis -> (direction on full frames, direction on crops)."""


def contrast_directions(model: Any) -> TextFn:
    """The agent's scoring of a hypothesis as text directions for ``model`` (an image-text backend): the
    difference of the contrast pair's embeddings (its softmax ranks images like this difference) for the
    hypothesis on full frames, and for its crop wording (:func:`tools.reports.phrasing.crop_wording`) on crops."""
    from tools.reports.phrasing import crop_wording
    from tools.scoring.contrast import contrast_for

    def direction(hyp: Hypothesis) -> np.ndarray:
        pos, neg = model.encode_texts([hyp.text, contrast_for(hyp)])
        return np.asarray(pos - neg)

    return lambda hyp: (direction(hyp), direction(crop_wording(hyp)))


def _scorers(folder: Path | None = None) -> list[tuple[str, EmbedFn, TextFn]]:
    from tools.scorers.mini import WEIGHTS_FILE, weights_dir

    scorers: list[tuple[str, EmbedFn, TextFn]] = []
    weights = (folder or weights_dir()) / WEIGHTS_FILE
    if weights.exists():
        from tools.scorers.mini import load_mini

        model = load_mini(folder)
        scorers.append(("mini CLIP", lambda ims: model.encode_images(ims), contrast_directions(model)))
    else:
        print(f"mini CLIP weights missing ({weights}): local-contrast scorer only")
    scorers.append(("local contrast", local_contrast_embed, lambda _h: (LOCAL_CONTRAST_TEXT, LOCAL_CONTRAST_TEXT)))
    return scorers


def main(argv: list[str] | None = None) -> None:
    """Print the before/after table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=30, help="images per group")
    parser.add_argument("--size", type=int, default=512, help="rendered (original) image size")
    parser.add_argument("--weights", type=Path, default=None, help="mini weights folder (default: the committed pack)")
    parser.add_argument(
        "--background", action="store_true", help="add SynthDiffBench's random background findings to every study"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    scorers = _scorers(args.weights)
    print("separation = max(AUROC, 1 - AUROC): how well the score tells the groups apart in either direction")
    header = f"{'case':50s} {'scorer':15s} {'region':18s} {'AUROC full':>10s} {'zoomed':>7s} {'delta':>7s}"
    print(f"{header} {'separation full':>15s} {'zoomed':>7s}")
    for case in default_cases():
        images_a, images_b = render_groups(case, args.n, args.size, background=args.background)
        for name, embed, text_fn in scorers:
            text, crop_text = text_fn(case.hypothesis())
            full, zoomed = zoom_experiment(embed, text, images_a, images_b, case.region, crop_text_embedding=crop_text)
            sep_full, sep_zoom = max(full, 1 - full), max(zoomed, 1 - zoomed)
            print(
                f"{case.name:50s} {name:15s} {case.region:18s} {full:10.3f} {zoomed:7.3f} {zoomed - full:+7.3f}"
                f" {sep_full:15.3f} {sep_zoom:7.3f}"
            )
    mix = "with background findings" if args.background else "single finding"
    print(f"{args.n} vs {args.n} images per case at {args.size} px, {mix}; {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
