import subprocess
import sys

import numpy as np
from PIL import Image

from raddiff.cli.main import main


def _png(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(path)


def test_help_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "raddiff.cli.main", "--help"], capture_output=True, text=True, check=True
    )
    assert "compare" in out.stdout and "config" in out.stdout


def test_compare_dry_run_prints_sizes_and_problems(tmp_path, capsys):
    for i in range(3):
        _png(tmp_path / "A" / f"a{i}.png", i)
    for i in range(2):
        _png(tmp_path / "B" / f"b{i}.png", 10 + i)
    (tmp_path / "B" / "notes.bin").write_bytes(b"x")
    assert main(["compare", str(tmp_path / "A"), str(tmp_path / "B"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "group A: 'A': 3 studies" in out and "group B: 'B': 2 studies" in out
    assert "while loading: 1 inputs skipped" in out and "notes.bin: not an image file" in out


def test_compare_empty_or_missing_folder_fails_clearly(tmp_path, capsys):
    _png(tmp_path / "A" / "a.png", 1)
    (tmp_path / "B").mkdir()
    assert main(["compare", str(tmp_path / "A"), str(tmp_path / "B"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("B: no images found (empty group)") and err.startswith("raddiff compare: error:")
    assert len(err.splitlines()) == 1
    assert main(["compare", str(tmp_path / "A"), str(tmp_path / "missing"), "--dry-run"]) == 2
    assert "missing: folder not found" in capsys.readouterr().err


def test_config_shows_flag_values(capsys):
    assert main(["--batch-size", "7", "config"]) == 0
    assert "batch_size = 7" in capsys.readouterr().out
