"""The Indiana University chest X-ray reports that ``torchxrayvision`` ships (3,955 real reports).

Used to learn report phrasing (SynthCXR's report writer) and as real text for the report labeler's and
report search's tests. The archive is read lazily and parsed with the standard library's XML parser.
"""

from __future__ import annotations

import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from tools.domain import InputError


@dataclass(frozen=True)
class IUReport:
    """One IU report: its id, sections and MeSH tags (major and automatic)."""

    report_id: str
    indication: str
    comparison: str
    findings: str
    impression: str
    mesh_major: tuple[str, ...] = field(default_factory=tuple)
    mesh_automatic: tuple[str, ...] = field(default_factory=tuple)

    @property
    def text(self) -> str:
        """FINDINGS and IMPRESSION as one report text, in the usual layout."""
        parts = []
        if self.findings:
            parts.append(f"FINDINGS: {self.findings}")
        if self.impression:
            parts.append(f"IMPRESSION: {self.impression}")
        return "\n".join(parts)


def iu_archive_path() -> Path:
    """Where torchxrayvision keeps ``NLMCXR_reports.tgz``; a clear error when the package is missing."""
    try:
        import torchxrayvision
    except ImportError:
        raise InputError("IU reports need torchxrayvision (pip install torchxrayvision)") from None
    path = Path(torchxrayvision.__file__).parent / "data" / "NLMCXR_reports.tgz"
    if not path.is_file():
        raise InputError(f"{path}: IU report archive not found in the torchxrayvision package")
    return path


def _parse(report_id: str, xml_bytes: bytes) -> IUReport:
    root = ET.fromstring(xml_bytes)
    sections = {(node.get("Label") or "").upper(): (node.text or "").strip() for node in root.iter("AbstractText")}
    mesh = root.find("MeSH")
    major = tuple((n.text or "").strip() for n in mesh.findall("major")) if mesh is not None else ()
    auto = tuple((n.text or "").strip() for n in mesh.findall("automatic")) if mesh is not None else ()
    return IUReport(
        report_id=report_id,
        indication=sections.get("INDICATION", ""),
        comparison=sections.get("COMPARISON", ""),
        findings=sections.get("FINDINGS", ""),
        impression=sections.get("IMPRESSION", ""),
        mesh_major=major,
        mesh_automatic=auto,
    )


@lru_cache(maxsize=2)
def load_iu_reports(archive: Path | None = None) -> tuple[IUReport, ...]:
    """All IU reports with a FINDINGS or IMPRESSION section, sorted by report number."""
    path = archive or iu_archive_path()
    reports = []
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            if not (member.isfile() and member.name.endswith(".xml")):
                continue
            handle = tar.extractfile(member)
            if handle is None:
                continue
            report = _parse(Path(member.name).stem, handle.read())
            if report.findings or report.impression:
                reports.append(report)
    reports.sort(key=lambda r: int(r.report_id) if r.report_id.isdigit() else 0)
    return tuple(reports)


# ----------------------------------------------------------------------------------------- MeSH truth

MESH_TERMS: dict[str, str] = {
    "cardiomegaly": "cardiomegaly",
    "cardiac shadow/enlarged": "cardiomegaly",
    "pulmonary atelectasis": "atelectasis",
    "calcified granuloma": "calcified_granuloma",
    "granulomatous disease": "calcified_granuloma",
    "granuloma": "calcified_granuloma",
    "calcinosis/lung/hilum": "calcified_granuloma",
    "calcinosis/mediastinum/lymph nodes": "calcified_granuloma",
    "calcinosis/lymph nodes": "calcified_granuloma",
    "calcinosis/aorta": "aortic_calcification",
    "atherosclerosis/aorta": "aortic_calcification",
    "thoracic vertebrae/degenerative": "degenerative_spine",
    "spine/degenerative": "degenerative_spine",
    "osteophyte": "degenerative_spine",
    "spondylosis": "degenerative_spine",
    "cicatrix": "scarring",
    "pulmonary fibrosis": "scarring",
    "aorta/tortuous": "aortic_tortuosity",
    "aorta, thoracic/tortuous": "aortic_tortuosity",
    "pleural effusion": "pleural_effusion",
    "catheters, indwelling": "central_venous_catheter",
    "scoliosis": "scoliosis",
    "kyphosis": "kyphosis",
    "fractures, bone/ribs": "rib_fracture",
    "fractures, bone": "fracture",
    "pulmonary congestion": "pulmonary_edema",
    "pulmonary edema": "pulmonary_edema",
    "emphysema": "hyperinflation",
    "pulmonary emphysema": "hyperinflation",
    "pulmonary disease, chronic obstructive": "hyperinflation",
    "lung/hyperdistention": "hyperinflation",
    "lung/hypoinflation": "low_lung_volumes",
    "hernia, hiatal": "hiatal_hernia",
    "nodule": "nodule",
    "mass": "mass",
    "airspace disease": "consolidation",
    "consolidation": "consolidation",
    "pneumonia": "consolidation",
    "infiltrate": "consolidation",
    "opacity": "lung_opacity",
    "diaphragm/right/elevated": "elevated_hemidiaphragm",
    "diaphragm/left/elevated": "elevated_hemidiaphragm",
    "diaphragmatic eventration": "elevated_hemidiaphragm",
    "bone diseases, metabolic": "osteopenia",
    "thickening/pleura": "pleural_thickening",
    "markings/lung/interstitial": "interstitial_markings",
    "lung diseases, interstitial": "interstitial_markings",
    "pneumothorax": "pneumothorax",
    "stents": "stent",
    "mediastinum/prominent": "enlarged_cardiomediastinum",
    "mediastinum/enlarged": "enlarged_cardiomediastinum",
}
"""MeSH major terms of the IU reports (the term and its first qualifiers, lower case; the longest listed prefix
wins) -> finding key of :mod:`tools.vocabulary`. Terms not listed are other findings (technical quality,
medical devices of unknown kind, ...)."""

_MESH_SIZE = {"small": "small", "moderate": "moderate", "large": "large"}
_MESH_SEVERITY = {"mild": "mild", "moderate": "moderate", "severe": "severe"}
_UNCERTAIN_MESH = ("borderline",)


@dataclass(frozen=True)
class MeshTruth:
    """What a report's MeSH major tags say: normal, the vocabulary findings with attributes, and the rest."""

    normal: bool
    findings: dict[str, dict[str, str]]
    other: tuple[str, ...]
    uncertain: tuple[str, ...] = ()


def mesh_finding(term: str) -> str | None:
    """The vocabulary key of one MeSH major term (``None`` when it names no finding of the vocabulary)."""
    low = term.strip().lower()
    best = None
    for prefix, key in MESH_TERMS.items():
        if (low == prefix or low.startswith(prefix + "/")) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, key)
    return best[1] if best else None


def mesh_truth(report: IUReport) -> MeshTruth:
    """The report's MeSH major tags read as findings: side from left/right/bilateral qualifiers (both sides of
    one finding read as bilateral), size for effusions, severity for graded findings; a 'borderline' tag is
    uncertain (its finding is listed in ``uncertain``, not in ``findings``)."""
    findings: dict[str, dict[str, str]] = {}
    other: list[str] = []
    uncertain: list[str] = []
    normal = False
    for term in report.mesh_major:
        low = term.strip().lower()
        if low == "normal":
            normal = True
            continue
        key = mesh_finding(term)
        if key is None:
            other.append(term)
            continue
        parts = [p.strip() for p in low.split("/")]
        if any(p in _UNCERTAIN_MESH for p in parts):
            uncertain.append(key)
            continue
        attrs = findings.setdefault(key, {})
        sides = {p for p in parts if p in ("left", "right", "bilateral")}
        if sides:
            side = "bilateral" if "bilateral" in sides or {"left", "right"} <= sides else sides.pop()
            if attrs.get("side") not in (None, side):
                side = "bilateral"
            attrs["side"] = side
        for p in parts:
            if key == "pleural_effusion" and p in _MESH_SIZE:
                attrs["size"] = _MESH_SIZE[p]
            elif key in ("cardiomegaly", "pulmonary_edema") and p in _MESH_SEVERITY:
                attrs["severity"] = _MESH_SEVERITY[p]
    return MeshTruth(normal=normal and not findings, findings=findings, other=tuple(other), uncertain=tuple(uncertain))
