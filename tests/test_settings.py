from pathlib import Path

import pytest

from tools.domain import InputError
from tools.settings import Settings, load_settings, openai_credentials


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in list(Settings.model_fields):
        monkeypatch.delenv(f"RADDIFF_{name.upper()}", raising=False)
    monkeypatch.delenv("RADDIFF_CONFIG", raising=False)


def test_defaults():
    s = load_settings()
    assert s.scorer == "mini" and s.llm == "rules" and s.batch_size == 32 and s.device == "auto"


def test_precedence_defaults_yaml_env_flags(tmp_path, monkeypatch):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("batch_size: 8\nseed: 5\nscorer: open_clip:ViT-B-32\n")
    s = load_settings(cfg)
    assert (s.batch_size, s.seed, s.scorer) == (8, 5, "open_clip:ViT-B-32")
    monkeypatch.setenv("RADDIFF_BATCH_SIZE", "16")
    s = load_settings(cfg)
    assert (s.batch_size, s.seed) == (16, 5)  # env beats file, file beats default
    s = load_settings(cfg, batch_size=64, seed=None)
    assert (s.batch_size, s.seed) == (64, 5)  # flag beats env; a flag not given (None) changes nothing
    monkeypatch.setenv("RADDIFF_CONFIG", str(cfg))
    assert load_settings().seed == 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("batch_size: [", "not valid YAML"),
        ("- a\n- b\n", "must be a mapping"),
        ("batchsize: 3\n", "unknown setting 'batchsize'"),
        ("openai_api_key: sk-123\n", "secrets (openai_api_key) belong in the environment"),
        ("batch_size: 0\n", "setting batch_size: Input should be greater than or equal to 1"),
        ("device: tpu\n", "setting device:"),
    ],
)
def test_bad_settings_files(tmp_path, text, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(InputError) as info:
        load_settings(cfg)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_missing_settings_file(tmp_path):
    with pytest.raises(InputError, match="nope.yaml: settings file not found"):
        load_settings(tmp_path / "nope.yaml")


def test_bad_env_value(monkeypatch):
    monkeypatch.setenv("RADDIFF_BATCH_SIZE", "lots")
    with pytest.raises(InputError, match="setting batch_size"):
        load_settings()


def test_secrets_only_from_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert openai_credentials() == ("sk-test", "http://127.0.0.1:9/v1")
    assert "openai_api_key" not in Settings.model_fields


def test_every_field_is_documented():
    assert all(f.description for f in Settings.model_fields.values())
    assert isinstance(load_settings().cache_dir, Path)
