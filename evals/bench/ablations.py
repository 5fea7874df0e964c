"""Ablations: named switches of one benchmark run, mapped onto :class:`~agent.context.RunContext` fields."""

from __future__ import annotations

from tools.domain import InputError

ABLATIONS: dict[str, tuple[str, dict[str, object]]] = {
    "single_pass": ("one hypothesize-verify pass, no refinement (VisDiff-style)", {"refine": False}),
    "no_zoom": ("no localize-and-zoom", {"use_zoom": False}),
    "no_reports": ("images only: reports are not read", {"use_reports": False}),
    "reports_only": (
        "reports only: no image description, hypotheses scored on report text",
        {"use_images": False, "scorer": "reports"},
    ),
    "single_prompt": ("score with the hypothesis prompt alone, no contrast prompt", {"contrast_scoring": False}),
}


def ablation_overrides(names: list[str] | tuple[str, ...]) -> dict[str, object]:
    """The RunContext overrides of the named ablations (combined); unknown names are an error."""
    out: dict[str, object] = {}
    for name in names:
        if name not in ABLATIONS:
            raise InputError(f"ablation {name!r}: unknown (known: {', '.join(ABLATIONS)})")
        out.update(ABLATIONS[name][1])
    if "no_reports" in names and "reports_only" in names:
        raise InputError("ablations no_reports and reports_only exclude each other")
    return out
