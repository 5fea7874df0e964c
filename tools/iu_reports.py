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
