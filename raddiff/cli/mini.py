"""``raddiff train-mini`` and ``raddiff eval-mini``: train the offline model pack and measure its quality gate."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def train_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``raddiff train-mini``."""
    parser.add_argument("--out", type=Path, default=None, help="Output folder (default: the package's tools/weights).")
    parser.add_argument("--n-images", type=int, default=None, help="Training images to render.")
    parser.add_argument("--steps", type=int, default=None, help="Optimiser steps.")
    parser.add_argument("--batch", type=int, default=None, help="Images per step.")
    parser.add_argument("--train-seed", type=int, default=0, help="Training seed (fixed by default).")
    parser.add_argument("--eval-per-group", type=int, default=30, help="Evaluation images per finding and level.")
    parser.add_argument("--no-eval", action="store_true", help="Skip calibration and the quality gate.")
    parser.set_defaults(run=run_train)


def eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``raddiff eval-mini``."""
    parser.add_argument("--weights", type=Path, default=None, help="Weights folder (default: the committed pack).")
    parser.add_argument("--per-group", type=int, default=30, help="Evaluation images per finding and level.")
    parser.add_argument("--recalibrate", action="store_true", help="Recompute and store the describer calibration.")
    parser.set_defaults(run=run_eval)


def run_train(args: argparse.Namespace) -> int:
    """Train, calibrate and evaluate; write weights, the describer calibration and figures."""
    from evals.mini.train import TrainConfig, train_mini
    from tools.scorers.mini import weights_dir
    from tools.settings import load_settings

    settings = load_settings(args.config, cache_dir=args.cache_dir)
    config = TrainConfig(seed=args.train_seed)
    if args.n_images:
        config.n_images = args.n_images
    if args.steps:
        config.steps = args.steps
    if args.batch:
        config.batch_size = args.batch
    out = args.out or weights_dir()
    record = train_mini(out, config, settings.cache_dir)
    print(json.dumps(record["training"], indent=2))
    if args.no_eval:
        return 0
    return _evaluate(out, settings.cache_dir, args.eval_per_group, recalibrate=True)


def run_eval(args: argparse.Namespace) -> int:
    """Measure the quality gate of the committed (or given) weights."""
    from tools.scorers.mini import weights_dir
    from tools.settings import load_settings

    settings = load_settings(args.config, cache_dir=args.cache_dir)
    return _evaluate(args.weights or weights_dir(), settings.cache_dir, args.per_group, recalibrate=args.recalibrate)


def _evaluate(folder: Path, cache_dir: Path, per_group: int, recalibrate: bool) -> int:
    from tqdm import tqdm

    from evals.mini.data import build_pool
    from evals.mini.evaluate import calibrate_describer, calibration_recipes, gate, measure, write_figures
    from tools.describers.mini import MiniDescriber, load_describer_calibration
    from tools.scorers.mini import load_mini

    model = load_mini(folder)
    size = int(model.config["image_size"])
    calibration = load_describer_calibration(folder)
    if recalibrate or not calibration.thresholds:
        recipes = calibration_recipes(600)
        with tqdm(total=len(recipes), desc="render calibration", unit="img") as bar:
            pool = build_pool(recipes, size, cache_dir, "calibration", bar.update)
        calibration = calibrate_describer(model, pool.images, pool.truths)
    describer = MiniDescriber(model, calibration)
    with tqdm(desc="render evaluation", unit="img") as bar:
        figures = measure(model, describer, cache_dir, size, per_group=per_group, progress=bar.update)
    write_figures(folder, figures, calibration)
    from evals.mini.card import write_card

    print(json.dumps(figures, indent=2))
    print(f"model card: {write_card(folder)}")
    failures = gate(figures)
    for failure in failures:
        print(f"NOT REACHED: {failure}")
    print("quality gate:", "passed" if not failures else f"{len(failures)} targets not reached")
    return 0
