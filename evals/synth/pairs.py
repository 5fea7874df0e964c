"""SynthDiffBench's pairs as data: the default suite (one, several and no planted differences, by difficulty),
the trust pairs, and the presets of ``raddiff demo`` / the chat app.
"""

from __future__ import annotations

from typing import Any

from evals.synth.bench import DEFAULT_BACKGROUND, SynthPairSpec
from evals.synth.findings import PlantedFinding


def _f(key: str, **attrs: str) -> PlantedFinding:
    return PlantedFinding(finding=key, attributes=attrs)


def _spec(
    name: str, set1: str, set2: str, a: list[PlantedFinding], b: list[PlantedFinding], d: int, **kw: Any
) -> SynthPairSpec:
    kw.setdefault("background", DEFAULT_BACKGROUND)
    return SynthPairSpec(name=name, set1=set1, set2=set2, a=a, b=b, difficulty=d, **kw)


def default_suite(n: int = 20, size: int = 256) -> list[SynthPairSpec]:
    """The default SynthDiffBench suite: 47 pairs mirroring the RadDiffBench conditions that can be simulated, then
    the :func:`trust_pairs` (8 with two or three planted differences, 10 whose groups do not differ)."""
    eff, card, ptx = "pleural_effusion", "cardiomegaly", "pneumothorax"
    specs = [
        _spec(
            "effusion_right_moderate",
            "moderate right pleural effusion",
            "no pleural effusion",
            [_f(eff, side="right", size="moderate")],
            [],
            2,
        ),
        _spec(
            "effusion_bilateral_small",
            "bilateral small pleural effusion",
            "no pleural effusion or pneumothorax",
            [_f(eff, side="bilateral", size="small")],
            [],
            2,
        ),
        _spec(
            "effusion_right_large",
            "large right pleural effusion",
            "no pleural effusion",
            [_f(eff, side="right", size="large")],
            [],
            1,
        ),
        _spec(
            "effusion_left_large_vs_small",
            "large left pleural effusion",
            "small left pleural effusion",
            [_f(eff, side="left", size="large")],
            [_f(eff, side="left", size="small")],
            2,
        ),
        _spec(
            "effusion_impure",
            "moderate right pleural effusion",
            "no pleural effusion",
            [_f(eff, side="right", size="moderate")],
            [],
            3,
            purity=0.6,
        ),
        _spec(
            "cvc_present",
            "central venous catheter present",
            "no central venous catheter",
            [_f("central_venous_catheter")],
            [],
            1,
        ),
        _spec(
            "cvc_junction_vs_high",
            "central venous catheter tip at the cavoatrial junction",
            "central venous catheter tip too high, in the brachiocephalic vein",
            [_f("central_venous_catheter", tip="cavoatrial_junction")],
            [_f("central_venous_catheter", tip="too_high")],
            3,
        ),
        _spec("rib_fracture", "displaced rib fracture", "no displaced rib fracture", [_f("rib_fracture")], [], 3),
        _spec(
            "rib_fracture_left",
            "displaced left rib fracture",
            "no rib fracture",
            [_f("rib_fracture", side="left")],
            [],
            3,
        ),
        _spec(
            "edema_moderate",
            "moderate pulmonary edema",
            "no pulmonary edema",
            [_f("pulmonary_edema", severity="moderate")],
            [],
            2,
        ),
        _spec(
            "edema_severe_vs_mild",
            "severe pulmonary edema",
            "mild pulmonary edema",
            [_f("pulmonary_edema", severity="severe")],
            [_f("pulmonary_edema", severity="mild")],
            2,
        ),
        _spec(
            "cardiomegaly_mild_vs_severe",
            "mild cardiomegaly",
            "severe cardiomegaly",
            [_f(card, severity="mild")],
            [_f(card, severity="severe")],
            2,
        ),
        _spec(
            "cardiomegaly_moderate",
            "moderate cardiomegaly",
            "normal cardiac silhouette",
            [_f(card, severity="moderate")],
            [],
            1,
        ),
        _spec("cardiomegaly_mild", "heart mildly enlarged", "heart size normal", [_f(card, severity="mild")], [], 3),
        _spec(
            "cardiomegaly_severe",
            "enlarged cardiac silhouette",
            "normal cardiac silhouette",
            [_f(card, severity="severe")],
            [],
            1,
        ),
        _spec(
            "ng_bronchus_vs_stomach",
            "NG tube in bronchus",
            "NG tube in stomach",
            [_f("enteric_tube", tip="bronchus")],
            [_f("enteric_tube", tip="stomach")],
            2,
        ),
        _spec(
            "ng_coiled_vs_stomach",
            "enteric tube coiled in the esophagus",
            "enteric tube in the stomach",
            [_f("enteric_tube", tip="esophagus_coiled")],
            [_f("enteric_tube", tip="stomach")],
            2,
        ),
        _spec(
            "enteric_present",
            "enteric tube terminating below the diaphragm",
            "no enteric tube",
            [_f("enteric_tube", tip="stomach")],
            [],
            1,
        ),
        _spec(
            "low_volumes_perihilar",
            "hypoinflated lungs with bilateral perihilar interstitial opacity",
            "lungs well inflated and clear",
            [_f("low_lung_volumes"), _f("pulmonary_edema", severity="mild")],
            [],
            2,
            background={},
        ),
        _spec(
            "cardiomegaly_with_edema",
            "cardiomegaly with prominent pulmonary edema",
            "cardiomegaly with no pulmonary edema",
            [_f(card, severity="moderate"), _f("pulmonary_edema", severity="moderate")],
            [_f(card, severity="moderate")],
            2,
        ),
        _spec(
            "chest_tube_left",
            "left pleural chest tube in place",
            "no chest tube",
            [_f("chest_tube", side="left")],
            [],
            1,
        ),
        _spec(
            "chest_tube_right", "right chest tube in place", "no chest tube", [_f("chest_tube", side="right")], [], 1
        ),
        _spec(
            "ptx_left_moderate",
            "moderate left pneumothorax",
            "no pneumothorax",
            [_f(ptx, side="left", size="moderate")],
            [],
            2,
        ),
        _spec(
            "ptx_right_large",
            "large right pneumothorax",
            "no pneumothorax",
            [_f(ptx, side="right", size="large")],
            [],
            1,
        ),
        _spec("ptx_small", "small pneumothorax", "no pneumothorax", [_f(ptx, size="small")], [], 3),
        _spec("picc_low_svc", "PICC terminating in the low SVC", "no PICC", [_f("picc", tip="low_svc")], [], 1),
        _spec(
            "picc_low_vs_high",
            "PICC tip in the low SVC",
            "PICC tip too high",
            [_f("picc", tip="low_svc")],
            [_f("picc", tip="too_high")],
            3,
        ),
        _spec(
            "lul_opacity",
            "confluent left upper lobe opacity",
            "clear left upper lobe",
            [_f("consolidation", lobe="LUL")],
            [],
            2,
        ),
        _spec(
            "rml_pneumonia",
            "pneumonia in the right middle lobe",
            "no pneumonia",
            [_f("consolidation", lobe="RML")],
            [],
            2,
        ),
        _spec(
            "rul_consolidation",
            "dense right upper lobe airspace consolidation",
            "no airspace consolidation",
            [_f("consolidation", lobe="RUL")],
            [],
            1,
        ),
        _spec(
            "rll_pneumonia",
            "right lower lobe pneumonia",
            "clear lungs without consolidation",
            [_f("consolidation", lobe="RLL")],
            [],
            2,
        ),
        _spec(
            "lll_opacity",
            "opacity in the left lower lobe",
            "no left lower lobe opacity",
            [_f("consolidation", lobe="LLL")],
            [],
            2,
        ),
        _spec(
            "any_consolidation",
            "opacity concerning for pneumonia",
            "no evidence of pneumonia",
            [_f("consolidation")],
            [],
            2,
        ),
        _spec("nodule_small", "small pulmonary nodule", "no pulmonary nodule", [_f("nodule", size="small")], [], 3),
        _spec("nodule_large", "pulmonary nodule", "no pulmonary nodule", [_f("nodule", size="large")], [], 2),
        _spec(
            "mass_right_upper",
            "right apical mass",
            "no apical opacity",
            [_f("mass", side="right", zone="upper")],
            [],
            2,
        ),
        _spec("mass_large", "large lung mass", "no lung mass", [_f("mass", size="large")], [], 1),
        _spec(
            "hyperinflation",
            "hyperinflated lungs with flattening of the hemidiaphragms",
            "normal lung inflation",
            [_f("hyperinflation")],
            [],
            2,
            background={},
        ),
        _spec(
            "low_lung_volumes",
            "low lung volumes",
            "normal lung volumes",
            [_f("low_lung_volumes")],
            [],
            3,
            background={},
        ),
        _spec(
            "basal_atelectasis",
            "basal atelectasis",
            "clear basal parenchyma",
            [_f("atelectasis", pattern="basal")],
            [],
            3,
        ),
        _spec(
            "platelike_atelectasis",
            "plate-like atelectasis",
            "no atelectasis",
            [_f("atelectasis", pattern="plate-like")],
            [],
            3,
        ),
        _spec(
            "mediastinal_shift_right",
            "rightward mediastinal shift",
            "no mediastinal shift",
            [_f("mediastinal_shift", direction="right")],
            [],
            2,
        ),
        _spec(
            "mediastinal_shift_left",
            "leftward mediastinal shift",
            "no mediastinal shift",
            [_f("mediastinal_shift", direction="left")],
            [],
            2,
        ),
        _spec(
            "ett_bronchus_vs_carina",
            "endotracheal tube in the right main bronchus",
            "endotracheal tube above the carina",
            [_f("endotracheal_tube", tip="right_main_bronchus")],
            [_f("endotracheal_tube", tip="above_carina")],
            2,
        ),
        _spec(
            "ett_present",
            "endotracheal tube in place",
            "no endotracheal tube",
            [_f("endotracheal_tube", tip="above_carina")],
            [],
            1,
        ),
        _spec("pacemaker_present", "pacemaker with leads", "no pacemaker", [_f("pacemaker")], [], 1),
        _spec(
            "edema_with_effusions",
            "moderate pulmonary edema with bilateral pleural effusion",
            "minimal pulmonary edema without pleural effusion",
            [_f("pulmonary_edema", severity="moderate"), _f(eff, side="bilateral", size="small")],
            [_f("pulmonary_edema", severity="mild")],
            2,
        ),
    ]
    specs += trust_pairs()
    return [s.model_copy(update={"n_a": n, "n_b": n, "size": size}) for s in specs]


def trust_pairs() -> list[SynthPairSpec]:
    """Pairs that test whether a run reports only real, distinct differences: two or three planted differences
    (each must be reported), and pairs whose groups do not differ (the same findings on both sides, background
    included: the right answer is "no independent difference")."""
    eff, card, edema = "pleural_effusion", "cardiomegaly", "pulmonary_edema"
    multi = [
        _spec(
            "multi_pacemaker_edema",
            "pacemaker and moderate pulmonary edema",
            "no pacemaker, no pulmonary edema",
            [_f("pacemaker"), _f(edema, severity="moderate")],
            [],
            2,
        ),
        _spec(
            "multi_effusion_vs_cvc",
            "moderate right pleural effusion",
            "central venous catheter",
            [_f(eff, side="right", size="moderate")],
            [_f("central_venous_catheter")],
            2,
        ),
        _spec(
            "multi_cardiomegaly_effusions",
            "moderate cardiomegaly with small bilateral pleural effusions",
            "normal heart size, no pleural effusion",
            [_f(card, severity="moderate"), _f(eff, side="bilateral", size="small")],
            [],
            2,
        ),
        _spec(
            "multi_ett_enteric",
            "endotracheal tube and enteric tube",
            "no tubes",
            [_f("endotracheal_tube", tip="above_carina"), _f("enteric_tube", tip="stomach")],
            [],
            2,
        ),
        _spec(
            "multi_ptx_chest_tube",
            "moderate left pneumothorax with a left chest tube",
            "no pneumothorax, no chest tube",
            [_f("pneumothorax", side="left", size="moderate"), _f("chest_tube", side="left")],
            [],
            2,
        ),
        _spec(
            "multi3_pacemaker_cardiomegaly_edema",
            "pacemaker, moderate cardiomegaly and moderate pulmonary edema",
            "no pacemaker, normal heart size, no edema",
            [_f("pacemaker"), _f(card, severity="moderate"), _f(edema, severity="moderate")],
            [],
            3,
        ),
        _spec(
            "multi3_icu_lines",
            "endotracheal tube, enteric tube and central venous catheter",
            "no tubes or lines",
            [
                _f("endotracheal_tube", tip="above_carina"),
                _f("enteric_tube", tip="stomach"),
                _f("central_venous_catheter"),
            ],
            [],
            3,
        ),
        _spec(
            "multi3_effusion_consolidation_vs_nodule",
            "moderate right pleural effusion and left lower lobe consolidation",
            "large pulmonary nodule",
            [_f(eff, side="right", size="moderate"), _f("consolidation", lobe="LLL")],
            [_f("nodule", size="large")],
            3,
        ),
    ]
    same: list[tuple[str, str, list[PlantedFinding]]] = [
        ("null_background", "no defining finding", []),
        ("null_effusion", "moderate right pleural effusion", [_f(eff, side="right", size="moderate")]),
        ("null_cvc", "central venous catheter", [_f("central_venous_catheter")]),
        ("null_cardiomegaly", "moderate cardiomegaly", [_f(card, severity="moderate")]),
        ("null_edema", "mild pulmonary edema", [_f(edema, severity="mild")]),
        ("null_enteric", "enteric tube in the stomach", [_f("enteric_tube", tip="stomach")]),
        ("null_ett", "endotracheal tube above the carina", [_f("endotracheal_tube", tip="above_carina")]),
        ("null_pacemaker", "pacemaker", [_f("pacemaker")]),
        ("null_pneumothorax", "moderate left pneumothorax", [_f("pneumothorax", side="left", size="moderate")]),
        ("null_consolidation", "right lower lobe consolidation", [_f("consolidation", lobe="RLL")]),
    ]
    null = [_spec(name, text, text, findings, list(findings), 2, no_difference=True) for name, text, findings in same]
    return multi + null


def _presets() -> dict[str, SynthPairSpec]:
    suite = {s.name: s for s in default_suite(n=30, size=256)}
    return {
        "effusion": suite["effusion_right_moderate"].model_copy(update={"name": "effusion"}),
        "cardiomegaly": suite["cardiomegaly_moderate"].model_copy(update={"name": "cardiomegaly"}),
        "pneumothorax": suite["ptx_left_moderate"].model_copy(update={"name": "pneumothorax"}),
        "cvc": suite["cvc_present"].model_copy(update={"name": "cvc"}),
        "ng_tube": suite["ng_bronchus_vs_stomach"].model_copy(update={"name": "ng_tube"}),
    }


PRESETS: dict[str, SynthPairSpec] = _presets()
"""Ready-made pairs for the demo and tests: 'effusion' (moderate right effusion vs none, 30 per group),
'cardiomegaly', 'pneumothorax', 'cvc', 'ng_tube'."""
