"""The self-contained HTML report of a run, and the per-study score rows behind its plots.

``report.html`` (in the run folder) holds the question, the summary, the differences with prevalence, AUROC, CI
and q-value, the co-varying signals, every tested hypothesis (collapsed),
evidence galleries (the most and least typical studies of each group for the top hypotheses), score
distribution plots, AUROC by round, the confounder check, the run settings and package versions. Images
and plots are embedded as base64 PNG, so the file opens anywhere with no network and no other file.
Every piece of text from data or models (hypotheses, reports, names) is HTML-escaped: nothing from a run is
ever interpreted as markup.

``scores.json`` keeps, for the top full-image hypotheses, every study's score, so that views (the chat
app, the report) can draw distributions and pick typical studies after the run's models are gone.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import platform
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from tools.domain import Comparison, InputError, RunResult, ScoredHypothesis, Study
from tools.ranking.lines import prevalence_text

log = logging.getLogger(__name__)

SCORES_FILE = "scores.json"
REPORT_FILE = "report.html"
VERSION_PACKAGES = ("raddiff", "torch", "langgraph", "langchain-core", "open_clip_torch", "transformers", "numpy")

ScoreRows = dict[str, dict[str, list[Any]]]
"""hypothesis key -> {"ids": study ids, "groups": "A"/"B" per study, "scores": score per study}."""


# ---------------------------------------------------------------- score rows


def score_rows(workspace: Any, ranked: Sequence[ScoredHypothesis], top: int = 20) -> ScoreRows:
    """Per-study scores of the top full-image hypotheses, from the run's workspace (hypotheses scored only on a
    zoomed region get no row)."""
    wanted = [s.hypothesis for s in ranked if s.region is None][:top]
    if workspace is None or not wanted:
        return {}
    return dict(workspace.score_rows(wanted))


def write_score_rows(rows: ScoreRows, run_dir: Path) -> None:
    """Write ``scores.json`` atomically."""
    tmp = run_dir / f".{SCORES_FILE}.tmp"
    tmp.write_text(json.dumps(rows), encoding="utf-8")
    tmp.replace(run_dir / SCORES_FILE)


def read_score_rows(run_dir: Path) -> ScoreRows:
    """The run's ``scores.json`` (empty when the run wrote none)."""
    path = Path(run_dir) / SCORES_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg})") from exc
    return dict(data)


def typical_studies(item: ScoredHypothesis, rows: ScoreRows, k: int = 3) -> dict[str, list[str]]:
    """Most and least typical study ids of each group for a hypothesis.

    "Typical" follows the claim: in the group where the finding is said to be more present the highest scores
    are most typical; in the other group the lowest. Without a score row, the stored evidence ids are used.
    Keys: ``most_A``, ``least_A``, ``most_B``, ``least_B``.
    """
    row = rows.get(item.hypothesis.key) if item.region is None else None
    if row is None:
        return {"most_A": list(item.evidence_a), "least_A": [], "most_B": list(item.evidence_b), "least_B": []}
    scores = np.asarray(row["scores"], dtype=float)
    groups = np.asarray(row["groups"])
    ids = list(row["ids"])
    out: dict[str, list[str]] = {}
    for group in ("A", "B"):
        index = np.flatnonzero(groups == group)
        sign = 1.0 if item.hypothesis.group == group else -1.0
        order = index[np.argsort(-sign * scores[index], kind="stable")]
        out[f"most_{group}"] = [ids[i] for i in order[:k]]
        out[f"least_{group}"] = [ids[i] for i in order[::-1][:k]]
    return out


def group_scores(item: ScoredHypothesis, rows: ScoreRows) -> tuple[np.ndarray, np.ndarray] | None:
    """The hypothesis' scores in group A and in group B (``None`` without a row)."""
    row = rows.get(item.hypothesis.key) if item.region is None else None
    if row is None:
        return None
    scores = np.asarray(row["scores"], dtype=float)
    groups = np.asarray(row["groups"])
    return scores[groups == "A"], scores[groups == "B"]


# ---------------------------------------------------------------- plots and images


def png_data_uri(png: bytes) -> str:
    """A ``data:image/png;base64,...`` URI for PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def thumbnail_png(path: Path, size: int = 160) -> bytes:
    """A small grayscale PNG of an image file (PNG, JPEG or DICOM)."""
    from tools.data.images import load_image, to_pil

    image = to_pil(load_image(path))
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def figure_png(fig: Any) -> bytes:
    """PNG bytes of a matplotlib figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def distribution_figure(item: ScoredHypothesis, rows: ScoreRows, names: tuple[str, str] = ("A", "B")) -> Any:
    """A matplotlib figure of the hypothesis' score distributions in the two groups (``None`` without a row)."""
    pair = group_scores(item, rows)
    if pair is None:
        return None
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in the app's threads

    scores_a, scores_b = pair
    fig = Figure(figsize=(5.0, 2.6))
    ax = fig.subplots()
    both = np.concatenate([scores_a, scores_b])
    bins = [float(v) for v in np.linspace(float(both.min()), float(both.max()) + 1e-9, 21)]
    ax.hist(scores_a, bins=bins, alpha=0.6, label=f"A: {names[0]} (n={scores_a.size})", color="#d62728")
    ax.hist(scores_b, bins=bins, alpha=0.6, label=f"B: {names[1]} (n={scores_b.size})", color="#1f77b4")
    ax.set_xlabel("score")
    ax.set_ylabel("studies")
    ax.set_title(f"{item.hypothesis.text[:60]} (AUROC {item.directional_auroc:.3f})", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def auroc_figure(history: Sequence[float]) -> Any:
    """A matplotlib figure of the best AUROC after each round."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.0, 2.4))
    ax = fig.subplots()
    rounds = list(range(1, len(history) + 1))
    ax.plot(rounds, list(history), marker="o")
    ax.set_ylim(0.45, 1.02)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("round")
    ax.set_ylabel("best AUROC")
    ax.set_xticks(rounds)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- the report


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def package_versions() -> dict[str, str]:
    """Python and key package versions (``not installed`` where absent)."""
    out = {"python": platform.python_version()}
    for name in VERSION_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _gallery(item: ScoredHypothesis, rows: ScoreRows, studies: dict[str, Study], k: int) -> str:
    picks = typical_studies(item, rows, k)
    parts = []
    for key, title in (
        ("most_A", "most typical of A"),
        ("least_A", "least typical of A"),
        ("most_B", "most typical of B"),
        ("least_B", "least typical of B"),
    ):
        cells = []
        for sid in picks.get(key, []):
            study = studies.get(sid)
            if study is None:
                cells.append(f'<figure class="missing">{_e(sid)}: not in this comparison</figure>')
                continue
            try:
                img = f'<img alt="{_e(sid)}" src="{png_data_uri(thumbnail_png(study.primary_image))}">'
            except InputError as exc:
                img = f'<div class="missing">image unreadable: {_e(exc)}</div>'
            report = (
                f"<details><summary>report</summary><pre>{_e(study.report)}</pre></details>" if study.report else ""
            )
            cells.append(f"<figure>{img}<figcaption>{_e(sid)}</figcaption>{report}</figure>")
        if cells:
            parts.append(f'<div class="strip"><h4>{_e(title)}</h4>{"".join(cells)}</div>')
    return "".join(parts) or "<p>No evidence studies recorded.</p>"


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}
th{background:#f3f3f3}.strip{display:inline-block;vertical-align:top;margin:0 1em 1em 0}
figure{display:inline-block;margin:2px;font-size:11px;max-width:170px}figure img{display:block}
pre{white-space:pre-wrap;font-size:11px;max-width:320px}.missing{color:#a00}
.warn{color:#a00;font-weight:bold}section{margin-bottom:2em}
"""


def render_html_report(
    result: RunResult,
    comparison: Comparison | None = None,
    rows: ScoreRows | None = None,
    *,
    top: int = 15,
    galleries: int = 3,
    k: int = 3,
) -> str:
    """The report as one self-contained HTML string (images embedded; all text escaped)."""
    rows = rows or {}
    studies = {s.study_id: s for _, s in comparison.all_studies()} if comparison is not None else {}
    names = (result.set_a_name, result.set_b_name)
    out = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">",
        f"<title>raddiff report {_e(result.run_id)}</title><style>{_CSS}</style></head><body>",
        f"<h1>How '{_e(names[0])}' (A, n={result.n_a}) differs from '{_e(names[1])}' (B, n={result.n_b})</h1>",
        f"<p><b>Question:</b> {_e(result.question or '(general comparison)')}</p>",
        f"<p>Run <code>{_e(result.run_id)}</code>: {result.rounds} round(s), stopped because "
        f"{_e(result.stop_reason or 'done')}; {len(result.skipped)} inputs skipped; {result.seconds:.1f} s.</p>",
        f"<p class='summary'><b>{_e(result.summary or 'No summary.')}</b></p>",
        "<section><h2>Differences</h2>",
    ]
    if result.differences:
        out.append(
            "<table><tr><th>#</th><th>difference</th><th>more in</th><th>prevalence (A vs B)</th><th>AUROC</th>"
            "<th>95% CI</th><th>q-value</th><th>basis</th></tr>"
        )
        for i, d in enumerate(result.differences, start=1):
            out.append(
                f"<tr><td>{i}</td><td>{_e(d.text)}</td><td>{_e(d.group)}</td><td>{_e(prevalence_text(d.prevalence))}"
                f"</td><td>{d.auroc:.3f}</td><td>{d.ci_low:.3f}-{d.ci_high:.3f}</td><td>{d.q_value:.2g}</td>"
                f"<td>{_e(d.basis)}</td></tr>"
            )
        out.append("</table>")
        for i, d in enumerate(result.differences, start=1):
            if d.wordings:
                out.append(f"<details><summary>#{i}: {len(d.wordings)} other wordings tested</summary><ul>")
                out += [f"<li>{_e(w)}</li>" for w in d.wordings]
                out.append("</ul></details>")
    else:
        out.append("<p>No independent difference.</p>")
    out.append("</section><section><h2>Co-varying signals</h2>")
    if result.covarying:
        out.append(
            "<p>They separate the groups but are not shown to be differences of their own.</p><table><tr>"
            "<th>signal</th><th>more in</th><th>AUROC</th><th>q-value</th><th>why not a difference</th></tr>"
        )
        out += [
            f"<tr><td>{_e(c.text)}</td><td>{_e(c.group)}</td><td>{c.auroc:.3f}</td><td>{c.q_value:.2g}</td>"
            f"<td>{_e(c.reason)}</td></tr>"
            for c in result.covarying
        ]
        out.append("</table>")
    else:
        out.append("<p>None.</p>")
    out.append(
        f"</section><section><details><summary><b>Every tested hypothesis ({len(result.ranked)})</b></summary>"
        "<table><tr><th>#</th><th>hypothesis</th><th>more in</th>"
        "<th>AUROC</th><th>95% CI</th><th>q-value</th><th>region</th><th>round</th></tr>"
    )
    for i, s in enumerate(result.ranked[:top], start=1):
        lo, hi = s.directional_ci
        out.append(
            f"<tr><td>{i}</td><td>{_e(s.hypothesis.text)}</td><td>{_e(s.hypothesis.group)}</td>"
            f"<td>{s.directional_auroc:.3f}</td><td>{lo:.3f}-{hi:.3f}</td><td>{s.score.q_value:.2g}</td>"
            f"<td>{_e(s.region or 'full image')}</td><td>{s.round}</td></tr>"
        )
    out.append("</table></details></section>")
    if not result.ranked:
        out.append("<p>No hypothesis was scored.</p>")
    out.append("<section><h2>Evidence</h2>")
    by_text = {(s.hypothesis.text, s.region): s for s in result.ranked}
    shown = [by_text[(d.text, None)] for d in result.differences if (d.text, None) in by_text]
    for i, s in enumerate((shown or result.ranked)[:galleries], start=1):
        out.append(f"<h3>{i}. {_e(s.hypothesis.text)} (more in {_e(s.hypothesis.group)})</h3>")
        fig = distribution_figure(s, rows, names)
        if fig is not None:
            out.append(f'<img alt="score distributions" src="{png_data_uri(figure_png(fig))}"><br>')
        else:
            out.append("<p>Score distribution not recorded for this hypothesis.</p>")
        out.append(_gallery(s, rows, studies, k) if studies else "<p>Images not available.</p>")
    out.append("</section><section><h2>AUROC by round</h2>")
    if result.auroc_history:
        out.append(f'<img alt="AUROC by round" src="{png_data_uri(figure_png(auroc_figure(result.auroc_history)))}">')
        out.append("<p>" + ", ".join(f"round {i}: {a:.3f}" for i, a in enumerate(result.auroc_history, 1)) + "</p>")
    else:
        out.append("<p>No round was completed.</p>")
    out.append("</section><section><h2>Confounder check</h2>")
    if result.confounders is None:
        out.append("<p>Not run (no per-study metadata, or no image scores).</p>")
    else:
        out.append("<table><tr><th>field</th><th>AUROC A vs B</th></tr>")
        out += [f"<tr><td>{_e(f)}</td><td>{v:.3f}</td></tr>" for f, v in result.confounders.field_auroc.items()]
        out.append("</table>")
        out += [f'<p class="warn">WARNING: {_e(flag)}</p>' for flag in result.confounders.flagged]
    out.append("</section>")
    if result.skipped:
        out.append("<section><h2>Skipped inputs</h2><ul>")
        out += [f"<li>{_e(s.item)}: {_e(s.reason)}</li>" for s in result.skipped[:100]]
        out.append("</ul></section>")
    out.append("<section><h2>Run settings</h2><table>")
    out += [f"<tr><td>{_e(key)}</td><td>{_e(value)}</td></tr>" for key, value in sorted(result.settings.items())]
    out.append("</table><h2>Versions</h2><table>")
    out += [f"<tr><td>{_e(key)}</td><td>{_e(value)}</td></tr>" for key, value in package_versions().items()]
    out.append(f"</table><p>Written {_e(time.strftime('%Y-%m-%d %H:%M:%S'))}.</p></section></body></html>")
    return "\n".join(out)


def write_html_report(
    result: RunResult, run_dir: Path, comparison: Comparison | None = None, rows: ScoreRows | None = None
) -> Path:
    """Write ``report.html`` into the run folder (atomically); returns its path."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    text = render_html_report(result, comparison, rows if rows is not None else read_score_rows(run_dir))
    tmp = run_dir / f".{REPORT_FILE}.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(run_dir / REPORT_FILE)
    return run_dir / REPORT_FILE
