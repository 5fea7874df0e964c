"""The architecture as the README's layout table states it: imports go one way, and no module keeps run state."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["tools", "agent", "graphs", "evals", "raddiff"]
"""Lowest first: a layer may import the layers before it, never one after it (``prompts`` is data, anyone's)."""


def _imports(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_never_imports_a_layer_above_it(layer: str) -> None:
    above = set(LAYERS[LAYERS.index(layer) + 1 :])
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / layer).rglob("*.py"))
        for line, module in _imports(path)
        if module.split(".")[0] in above
    ]
    assert not wrong, "\n".join(wrong)


def test_the_layer_check_sees_a_wrong_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from graphs.run import run_agent\n    return run_agent\n", encoding="utf-8")
    assert _imports(bad) == [(2, "graphs.run")]


def test_no_module_holds_run_state() -> None:
    """A run's workspace, trace and policy live in its session (agent.session), not in module globals."""
    import agent.policies
    import graphs.radiologist
    import graphs.runtime

    for module in (graphs.radiologist, graphs.runtime, agent.policies):
        names = [
            name
            for name, value in vars(module).items()
            if isinstance(value, dict) and name.startswith("_") and not name.startswith("__")
        ]
        assert not names, f"{module.__name__} keeps module-level dicts {names}"


def test_every_package_in_the_layout_table_exists() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Layout") :]
    for folder in (
        "raddiff/",
        "graphs/",
        "agent/",
        "tools/data/",
        "tools/scorers/",
        "tools/describers/",
        "tools/embeddings/",
        "tools/reports/",
        "tools/regions/",
        "tools/scoring/",
        "tools/ranking/",
        "tools/llm/",
        "evals/synth/",
        "evals/mini/",
        "evals/bench/",
        "prompts/",
    ):
        assert f"`{folder}`" in table, folder
        assert (ROOT / folder / "__init__.py").is_file(), folder
