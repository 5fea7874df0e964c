"""Tests of the offline MiniLM sentence encoder (tools.embeddings.text_encoder)."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

from tools.domain import InputError
from tools.embeddings.text_encoder import MINILM_DIM, MiniLMEncoder, build_minilm, load_minilm, mean_pool, minilm_path

TEXTS = ["No pleural effusion.", "Small left pleural effusion.", "Heart size is normal.", "The lungs are clear."]


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    return load_minilm("cpu")


def test_packaged_model_folder_has_weights_tokenizer_and_pooling() -> None:
    path = minilm_path()
    assert (path / "model.safetensors").is_file()
    assert (path / "tokenizer.json").is_file()
    assert (path / "1_Pooling" / "config.json").is_file()


def test_encode_shape_dtype_and_unit_norm(encoder: MiniLMEncoder) -> None:
    vecs = encoder.encode(TEXTS)
    assert vecs.shape == (len(TEXTS), MINILM_DIM) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    sims = vecs @ vecs.T
    # related sentences are closer than unrelated ones
    assert sims[0, 1] > sims[0, 2] and sims[0, 1] > sims[1, 3]
    assert encoder.encode([]).shape == (0, MINILM_DIM)


@pytest.mark.slow
def test_matches_sentence_transformers(encoder: MiniLMEncoder) -> None:
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(minilm_path()), device="cpu", local_files_only=True)
    texts = [*TEXTS, "There is a right IJ central venous catheter with tip overlying the inferior SVC. " * 30]
    ref = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    ours = encoder.encode(texts, batch_size=2)
    cos = np.sum(ref * ours, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(ours, axis=1))
    assert cos.min() > 0.999


def test_batching_and_cache_do_not_change_results(encoder: MiniLMEncoder) -> None:
    a = encoder.encode(TEXTS, batch_size=1)
    encoder.clear_cache()
    b = encoder.encode(list(reversed(TEXTS)), batch_size=3)[::-1]
    np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(InputError):
        encoder.encode("a single string")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        encoder.encode(TEXTS, batch_size=0)


def test_embed_is_differentiable_for_training_heads(encoder: MiniLMEncoder) -> None:
    import torch

    out = encoder.embed(TEXTS[:2])
    assert out.shape == (2, MINILM_DIM) and out.requires_grad
    out.sum().backward()
    grads = [p.grad for p in encoder.model.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    encoder.model.zero_grad(set_to_none=True)
    assert isinstance(encoder.tokenizer("x")["input_ids"], list)
    assert torch.is_tensor(mean_pool(torch.ones(1, 3, 4), torch.tensor([[1, 1, 0]])))


def test_mean_pool_ignores_padding() -> None:
    import torch

    tokens = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    pooled = mean_pool(tokens, torch.tensor([[1, 1, 0]]))
    assert pooled.tolist() == [[2.0, 2.0]]


def test_load_is_cached_once_per_device() -> None:
    assert load_minilm("cpu") is load_minilm("cpu")


def test_build_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    fresh = build_minilm()
    vec = fresh.encode(["No pneumothorax."])
    np.testing.assert_allclose(vec, load_minilm("cpu").encode(["No pneumothorax."]), atol=1e-5)


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        build_minilm(tmp_path / "nope")
