"""Model backends: CheXzero loading and preprocessing, open_clip models, the scorer registry."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from tools.domain import InputError
from tools.scorers.base import ImageTextModel, image_cache_key, text_cache_key
from tools.scorers.chexzero import (
    CHEXZERO_MEAN,
    CHEXZERO_STD,
    chexzero_preprocess,
    load_chexzero,
    pad_to_square,
    read_state_dict,
)
from tools.scorers.openclip import load_open_clip
from tools.scorers.registry import (
    ScorerSpec,
    _factory,
    clear_loaded_scorers,
    load_scorer,
    parse_scorer,
)

TINY: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32, "mlp_ratio": 2.0},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}

BG = (0.0 - CHEXZERO_MEAN) / CHEXZERO_STD  # black padding after CheXzero's normalisation: -1.21630...
FG = (255.0 - CHEXZERO_MEAN) / CHEXZERO_STD  # white: 1.83981...


# ---------------------------------------------------------------- CheXzero preprocessing (golden)


def keys_cubic(x: float, a: float = -0.75) -> float:
    x = abs(x)
    if x <= 1:
        return (a + 2) * x**3 - (a + 3) * x**2 + 1
    return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a if x < 2 else 0.0


def test_chexzero_golden_preprocessing_of_a_wide_white_image() -> None:
    # 2 x 4 white image: longest side -> 320 (320 x 160), pasted at rows 80..239 of a black 320 square;
    # normalised; bicubic 320 -> 224 without antialias: output row i samples input row (i + .5) * 320/224 - .5
    # with 4 taps, so rows <= 53 see only padding, rows 57..166 only image, rows >= 170 only padding.
    assert BG == pytest.approx(-1.2163, abs=1e-4) and FG == pytest.approx(1.8398, abs=1e-4)
    out = chexzero_preprocess(np.ones((2, 4), dtype=np.float32))
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    arr = out.numpy()
    np.testing.assert_array_equal(arr[0], arr[1])
    np.testing.assert_array_equal(arr[0], arr[2])
    np.testing.assert_allclose(arr[:, :54, :], BG, atol=1e-5)
    np.testing.assert_allclose(arr[:, 57:167, :], FG, atol=1e-5)
    np.testing.assert_allclose(arr[:, 170:, :], BG, atol=1e-5)
    # the edge rows, by hand: Keys' cubic (a = -0.75, torch's bicubic) weights the 4 input rows around
    # c = (i + .5) * 320 / 224 - .5; row 55 has one white tap at distance 2 - t, row 56 one black tap at 1 + t.
    t55 = 55.5 * 320 / 224 - 0.5 - 78
    t56 = 56.5 * 320 / 224 - 0.5 - 80
    assert arr[0, 55, 0] == pytest.approx(BG + keys_cubic(2 - t55) * (FG - BG), abs=1e-5)  # ringing below BG
    assert arr[0, 56, 0] == pytest.approx(FG + keys_cubic(1 + t56) * (BG - FG), abs=1e-5)  # overshoot above FG
    assert arr[0, 55, 0] < BG and arr[0, 56, 0] > FG
    np.testing.assert_allclose(arr[0], arr[0, :, :1].repeat(224, axis=1), atol=1e-5)  # every column alike


def test_chexzero_pad_keeps_aspect_and_centres() -> None:
    tall = np.zeros((400, 100), dtype=np.float32)
    tall[:, :] = 0.5
    square = np.asarray(pad_to_square(tall))
    assert square.shape == (320, 320)
    cols = np.flatnonzero(square[160] > 0)
    assert (cols.min(), cols.max()) == (120, 199)  # 80 px wide (100 * 320/400), centred
    assert square[160, 160] == 128  # 0.5 -> uint8 128
    # a uint8 PIL image and its canonical array preprocess identically
    img = Image.fromarray((np.arange(64 * 48) % 251).astype(np.uint8).reshape(48, 64), mode="L")
    from_pil = chexzero_preprocess(img)
    from_array = chexzero_preprocess(np.asarray(img, dtype=np.float32) / 255.0)
    torch.testing.assert_close(from_pil, from_array)


def test_chexzero_preprocessing_rejects_non_canonical_input() -> None:
    with pytest.raises(InputError, match="2-D grayscale"):
        chexzero_preprocess(np.zeros((3, 8, 8), dtype=np.float32))
    with pytest.raises(InputError, match="outside"):
        chexzero_preprocess(np.full((8, 8), 255.0, dtype=np.float32))


# ---------------------------------------------------------------- CheXzero: a real ViT-B/32, random weights


@pytest.fixture(scope="module")
def chexzero_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    """A random-initialised OpenAI-CLIP ViT-B/32 (QuickGELU) saved as a wrapped, DataParallel-style state dict."""
    import open_clip

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        reference = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None).eval()
    path = tmp_path_factory.mktemp("chexzero") / "chexzero_random.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, path)
    clear_loaded_scorers()
    model = load_scorer(f"chexzero:{path}", device="cpu")
    yield reference, path, model
    clear_loaded_scorers()


@pytest.mark.slow
def test_chexzero_checkpoint_loads_into_the_same_model(chexzero_checkpoint) -> None:
    from open_clip.tokenizer import tokenize

    reference, path, model = chexzero_checkpoint
    assert isinstance(model, ImageTextModel)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert model.weights_hash == digest and model.model_id == f"chexzero@{digest[:12]}"
    assert load_scorer(f"chexzero:{path}", device="cpu") is model  # loaded once per process
    rng = np.random.default_rng(0)
    images = [rng.random((40, 30)).astype(np.float32), rng.random((25, 50)).astype(np.float32)]
    got = model.encode_images(images)
    with torch.inference_mode():
        expected = reference.encode_image(torch.stack([chexzero_preprocess(i) for i in images])).numpy()
        texts = ["pleural effusion", "no pleural effusion"]
        expected_text = reference.encode_text(tokenize(texts, context_length=77)).numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    expected_text /= np.linalg.norm(expected_text, axis=1, keepdims=True)
    assert got.shape == (2, 512) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(model.encode_texts(texts), expected_text, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    assert model.logit_scale == pytest.approx(float(reference.logit_scale.detach().exp()))
    assert "chexzero" in image_cache_key(model) and image_cache_key(model) != text_cache_key(model)


def test_chexzero_missing_or_bad_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="checkpoint file not found.*CheXzero"):
        load_chexzero(tmp_path / "nope.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match="weights_only=True"):
        load_chexzero(garbage)
    wrong = tmp_path / "wrong.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, wrong)
    with pytest.raises(InputError, match="not an OpenAI-CLIP ViT state dict"):
        load_chexzero(wrong)
    nested = tmp_path / "nested.pt"
    torch.save({"model_state_dict": {"module.a": torch.ones(1), "module.b": torch.zeros(2)}}, nested)
    assert sorted(read_state_dict(nested)) == ["a", "b"]


class Evil:
    """Anything that is not a tensor or a plain container: weights_only=True must refuse to unpickle it."""


def test_chexzero_refuses_pickled_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"visual.proj": Evil()}, path)
    with pytest.raises(InputError, match="weights_only=True"):
        read_state_dict(path)


# ---------------------------------------------------------------- open_clip


def test_open_clip_random_small_model_and_weights_file(tmp_path: Path) -> None:
    model = load_open_clip("ViT-B-32", "random", seed=3, **TINY)
    again = load_open_clip("ViT-B-32", "random", seed=3, **TINY)
    other = load_open_clip("ViT-B-32", "random", seed=4, **TINY)
    assert model.weights_hash == again.weights_hash != other.weights_hash
    rng = np.random.default_rng(1)
    images = [rng.random((70, 90)).astype(np.float32) for _ in range(3)]
    emb = model.encode_images(images)
    assert emb.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(emb, again.encode_images(images), atol=1e-6)
    pil = Image.fromarray((images[0] * 255).round().astype(np.uint8), mode="L")
    np.testing.assert_allclose(model.encode_images([pil])[0], model.encode_images([images[0]])[0], atol=1e-2)
    txt = model.encode_texts(["pleural effusion", "cardiomegaly"])
    assert txt.shape == (2, 32)
    # the same weights through a file: same embeddings, file hash as weights hash
    weights = tmp_path / "tiny.pt"
    torch.save(model.module.state_dict(), weights)
    from_file = load_open_clip("ViT-B-32", str(weights), **TINY)
    np.testing.assert_allclose(from_file.encode_images(images), emb, atol=1e-5)
    assert from_file.weights_hash == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert from_file.model_id == "open_clip:ViT-B-32@tiny.pt"
    with pytest.raises(InputError, match="empty"):
        model.encode_texts(["ok", "  "])


def test_open_clip_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="say which weights"):
        load_open_clip("ViT-B-32")
    with pytest.raises(InputError, match="unknown architecture"):
        load_open_clip("Not-A-Model", "openai")
    with pytest.raises(InputError, match="weights file not found"):
        load_open_clip("ViT-B-32", str(tmp_path / "missing.safetensors"))


# ---------------------------------------------------------------- registry


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mini", ScorerSpec(kind="mini")),
        ("reports", ScorerSpec(kind="reports")),
        ("chexzero:/w/chexzero.pt", ScorerSpec(kind="chexzero", path=Path("/w/chexzero.pt"))),
        ("open_clip:ViT-B-32@openai", ScorerSpec(kind="open_clip", name="ViT-B-32", pretrained="openai")),
        ("open_clip:ViT-B-32", ScorerSpec(kind="open_clip", name="ViT-B-32")),
        (
            "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
            ScorerSpec(kind="open_clip", name="hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"),
        ),
        ("open_clip:hf-hub:org/name", ScorerSpec(kind="open_clip", name="hf-hub:org/name")),
        ("open_clip:local-dir:/models/x", ScorerSpec(kind="open_clip", name="local-dir:/models/x")),
    ],
)
def test_parse_scorer(text: str, expected: ScorerSpec) -> None:
    assert parse_scorer(text) == expected


@pytest.mark.parametrize("text", ["clip", "chexzero:", "open_clip:@x", "hf-hub:", ""])
def test_parse_scorer_rejects_malformed_ids(text: str) -> None:
    with pytest.raises(InputError, match="scorer"):
        parse_scorer(text)


def test_registry_errors() -> None:
    with pytest.raises(InputError, match="report text"):
        load_scorer("reports")
    with pytest.raises(InputError, match="not in this installation"):
        _factory("tools.scorers.no_such_backend:load")
    with pytest.raises(InputError, match="no CUDA|checkpoint file not found"):
        load_scorer("chexzero:/nonexistent/chexzero.pt", device="cuda" if not torch.cuda.is_available() else "cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_and_cpu_give_the_same_ranking() -> None:
    from scipy.stats import spearmanr

    rng = np.random.default_rng(2)
    images = [rng.random((64, 64)).astype(np.float32) for _ in range(16)]
    cpu = load_open_clip("ViT-B-32", "random", device="cpu", **TINY)
    gpu = load_open_clip("ViT-B-32", "random", device="cuda", dtype="float16", **TINY)
    text = cpu.encode_texts(["pleural effusion"])[0]
    s_cpu = cpu.encode_images(images) @ text
    s_gpu = gpu.encode_images(images) @ gpu.encode_texts(["pleural effusion"])[0]
    assert spearmanr(s_cpu, s_gpu).statistic > 0.99
