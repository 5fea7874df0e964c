"""SynthCXR report writer: reports agree with the planted findings (parsed back) and copy no real report."""

from __future__ import annotations

import numpy as np
import pytest

from evals.synth import FINDING_SPECS, PlantedFinding, parse_report, random_findings, write_report
from evals.synth.bench import _fill_random
from evals.synth.reports import phrase_bank
from tools.reports.iu import load_iu_reports
from tools.vocabulary import PLANTABLE_FINDINGS


def _check_round_trip(findings: list[PlantedFinding], rng: np.random.Generator) -> str:
    report = write_report(findings, rng)
    parsed = {p.finding: p.attributes for p in parse_report(report)}
    planted = {f.finding: f.resolved().attributes for f in findings}
    assert set(parsed) == set(planted), report
    for key, attrs in planted.items():
        for name, value in attrs.items():
            assert parsed[key].get(name) == value, f"{key}.{name}: {report}"
    return report


def test_every_finding_round_trips_with_every_attribute_value() -> None:
    rng = np.random.default_rng(0)
    for key in FINDING_SPECS:
        for name, values in PLANTABLE_FINDINGS[key].attributes.items():
            for value in values:
                for _ in range(3):  # several phrasings
                    _check_round_trip([_fill_random(PlantedFinding(finding=key, attributes={name: value}), rng)], rng)


def test_random_mixes_round_trip_and_never_copy_a_real_report() -> None:
    rng = np.random.default_rng(1)
    real = {" ".join(r.text.lower().split()) for r in load_iu_reports()}
    real |= {" ".join(r.findings.lower().split()) for r in load_iu_reports()}
    prevalence = dict.fromkeys(FINDING_SPECS, 0.2)
    texts = set()
    for _ in range(150):
        findings = random_findings(rng, prevalence)
        report = _check_round_trip(findings, rng)
        body = report.split("\n")[0].removeprefix("FINDINGS: ")
        assert " ".join(report.lower().split()) not in real
        assert " ".join(body.lower().split()) not in real
        texts.add(report)
    assert len(texts) > 140  # variety


def test_normal_report_has_pertinent_negatives() -> None:
    rng = np.random.default_rng(2)
    for _ in range(20):
        report = write_report([], rng)
        low = report.lower()
        assert "pneumothorax" in low and ("effusion" in low)
        assert parse_report(report) == []
        assert report.startswith("FINDINGS: ") and "\nIMPRESSION: " in report


def test_present_finding_is_never_denied() -> None:
    rng = np.random.default_rng(3)
    for _ in range(40):
        f = [PlantedFinding(finding="pleural_effusion", attributes={"side": "left", "size": "small"})]
        report = write_report(f, rng).lower()
        for sentence in report.replace("\n", " ").split(". "):
            if "effusion" in sentence:
                assert not sentence.strip().startswith(("no ", "there is no", "negative", "without"))


def test_phrase_bank_is_mined_from_iu_reports() -> None:
    bank = phrase_bank()
    real_sentences: set[str] = set()
    for r in load_iu_reports()[:4000]:
        real_sentences.update(s.strip() for s in (r.findings + " " + r.impression).split(". "))
    for topic in ("negative", "heart", "lungs", "impression"):
        assert len(bank[topic]) >= 20, topic
    assert any(s.rstrip(".") in real_sentences for s, _ in bank["negative"])


@pytest.mark.parametrize("text", ["", "FINDINGS: The lungs are clear.\nIMPRESSION: Normal chest."])
def test_parse_normal_text(text: str) -> None:
    assert parse_report(text) == []


def test_labeler_reads_only_plantable_findings_as_present_in_synthcxr_reports() -> None:
    """The real-radiograph vocabulary must not invent findings in SynthCXR's reports: every finding the labeler
    calls positive or uncertain in a simulated report is one SynthCXR planted (so SynthDiffBench's proposals
    stay the same)."""
    from tools.reports.labeler import label_report

    rng = np.random.default_rng(3)
    prevalence = dict.fromkeys(FINDING_SPECS, 0.25)
    for _ in range(300):
        findings = random_findings(rng, prevalence)
        report = write_report(findings, rng)
        present = {k for k, v in label_report(report).summary.items() if v != "negated"}
        extra = present - set(PLANTABLE_FINDINGS)
        assert not extra, f"{sorted(extra)} read in: {report}"


def test_synthcxr_reports_yield_no_open_vocabulary_phrases() -> None:
    """SynthCXR's reports name only vocabulary findings: the open-vocabulary miner proposes nothing there (so it
    adds no hypothesis to SynthDiffBench runs)."""
    from tools.reports.phrases import mine_phrases

    rng = np.random.default_rng(4)
    sick = [write_report(random_findings(rng, dict.fromkeys(FINDING_SPECS, 0.3)), rng) for _ in range(40)]
    normal = [write_report([], rng) for _ in range(40)]
    assert mine_phrases(sick, normal, min_gap=0.1) == []
