"""The quickstart notebook runs from top to bottom (nbclient), so it never goes stale."""

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def test_committed_notebook_has_its_outputs():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.get("outputs") for c in code[1:]), "commit the notebook executed, with its outputs"
    kinds = {k for c in code for o in c.outputs for k in o.get("data", {})}
    assert "image/png" in kinds  # the evidence gallery and the score plot


@pytest.mark.slow
def test_quickstart_notebook_executes(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    from tools.scorers.mini import WEIGHTS_FILE, weights_dir

    if not (weights_dir() / WEIGHTS_FILE).is_file():
        pytest.skip(f"the mini weights ({WEIGHTS_FILE}) are not in tools/weights: the offline stack cannot run")
    monkeypatch.setenv("RADDIFF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RADDIFF_OUTPUT_DIR", str(tmp_path / "runs"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert "steps: survey -> hypothesize -> verify" in text
    assert "run started" in text and "report.html" in text
    assert (tmp_path / "runs" / "quickstart" / "report.html").is_file()
