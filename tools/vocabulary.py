"""The finding vocabulary and the anatomical regions: one place for the names every layer uses.

SynthCXR plants these findings, the report labeler and the describers name them, the ``rules`` policy
proposes from them and the judges parse hypotheses back into them. A finding has a key, a display phrase,
synonyms (for text matching), allowed attributes, a default anatomical region and a negation phrase.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SIDES = ("left", "right", "bilateral")
SIZES = ("small", "moderate", "large")
SEVERITIES = ("mild", "moderate", "severe")
LOBES = ("RUL", "RML", "RLL", "LUL", "LLL")
ZONES = ("upper", "mid", "lower")
FRACTURE_SITES = ("clavicle", "spine", "humerus", "scapula", "sternum", "rib")
LOCATION_ATTRIBUTES = ("side", "lobe", "tip", "zone", "direction")
"""Attributes that say where a finding is: a wrong value makes a statement false, not just less precise."""
CROP_HIDDEN_ATTRIBUTES = ("side", "lobe", "zone", "rib", "direction", "size")
"""Attributes a region crop cannot show: where the crop was taken from, and (magnified) how big a thing is."""
LOBE_NAMES = {
    "RUL": "right upper lobe",
    "RML": "right middle lobe",
    "RLL": "right lower lobe",
    "LUL": "left upper lobe",
    "LLL": "left lower lobe",
}


@dataclass(frozen=True)
class Finding:
    """One finding of the vocabulary."""

    key: str
    phrase: str
    synonyms: tuple[str, ...]
    category: str
    region: str | None
    attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    absent_phrase: str = ""
    plantable: bool = True
    explained_by: tuple[str, ...] = ()

    @property
    def generic(self) -> bool:
        """True for a broad name ("lung opacity") whose mention a more specific finding in the sentence explains."""
        return bool(self.explained_by)

    @property
    def negation(self) -> str:
        """The pertinent-negative phrase, e.g. 'no pleural effusion'."""
        return self.absent_phrase or f"no {self.phrase}"


_PLANTABLE: tuple[Finding, ...] = (
    Finding(
        "pleural_effusion",
        "pleural effusion",
        (
            "pleural effusion",
            "effusion",
            "pleural fluid",
            "blunting of the costophrenic angle",
            "costophrenic angle blunting",
            "hydrothorax",
            "meniscus",
        ),
        "pleural",
        "costophrenic_angles",
        {"side": SIDES, "size": SIZES},
    ),
    Finding(
        "cardiomegaly",
        "cardiomegaly",
        (
            "cardiomegaly",
            "enlarged heart",
            "cardiac enlargement",
            "enlarged cardiac silhouette",
            "heart size is enlarged",
            "heart is enlarged",
            "enlargement of the cardiac silhouette",
        ),
        "cardiac",
        "cardiac_silhouette",
        {"severity": SEVERITIES},
        "normal heart size",
    ),
    Finding(
        "pneumothorax",
        "pneumothorax",
        ("pneumothorax", "pneumothoraces", "pleural line", "collapsed lung"),
        "pleural",
        "apices",
        {"side": ("left", "right"), "size": SIZES},
    ),
    Finding(
        "consolidation",
        "consolidation",
        (
            "consolidation",
            "airspace opacity",
            "airspace disease",
            "pneumonia",
            "infiltrate",
            "airspace consolidation",
            "lobar opacity",
        ),
        "parenchymal",
        None,
        {"lobe": LOBES},
    ),
    Finding(
        "nodule",
        "pulmonary nodule",
        ("nodule", "pulmonary nodule", "nodular opacity", "coin lesion", "noncalcified nodule"),
        "parenchymal",
        None,
        {"side": ("left", "right"), "zone": ("upper", "mid", "lower"), "size": SIZES},
    ),
    Finding(
        "mass",
        "lung mass",
        ("mass", "lung mass", "pulmonary mass", "tumor", "neoplasm"),
        "parenchymal",
        None,
        {"side": ("left", "right"), "zone": ("upper", "mid", "lower"), "size": SIZES},
    ),
    Finding(
        "pulmonary_edema",
        "pulmonary edema",
        (
            "pulmonary edema",
            "edema",
            "vascular congestion",
            "interstitial edema",
            "perihilar haze",
            "pulmonary vascular congestion",
            "fluid overload",
            "kerley b lines",
        ),
        "parenchymal",
        "hila",
        {"severity": SEVERITIES},
    ),
    Finding(
        "atelectasis",
        "atelectasis",
        (
            "atelectasis",
            "atelectatic",
            "plate-like atelectasis",
            "linear atelectasis",
            "volume loss",
            "subsegmental atelectasis",
            "discoid atelectasis",
        ),
        "parenchymal",
        "lower_zones",
        {"side": SIDES, "pattern": ("linear", "plate-like", "basal")},
    ),
    Finding(
        "low_lung_volumes",
        "low lung volumes",
        (
            "low lung volumes",
            "low lung volume",
            "hypoinflation",
            "poor inspiration",
            "shallow inspiration",
            "elevated hemidiaphragms",
        ),
        "lung_volume",
        "diaphragm",
        {},
        "normal lung volumes",
    ),
    Finding(
        "hyperinflation",
        "hyperinflation",
        (
            "hyperinflation",
            "hyperinflated",
            "hyperexpanded",
            "hyperexpansion",
            "flattened hemidiaphragms",
            "flattening of the diaphragm",
            "emphysema",
            "copd",
        ),
        "lung_volume",
        "diaphragm",
        {},
        "no hyperinflation",
    ),
    Finding(
        "mediastinal_shift",
        "mediastinal shift",
        ("mediastinal shift", "shift of the mediastinum", "tracheal deviation", "mediastinal deviation"),
        "mediastinal",
        "mediastinum",
        {"direction": ("left", "right")},
    ),
    Finding(
        "rib_fracture",
        "rib fracture",
        ("rib fracture", "rib fractures", "fractured rib", "fracture of the rib", "displaced rib fracture"),
        "bone",
        None,
        {"side": ("left", "right"), "rib": tuple(str(i) for i in range(3, 11))},
    ),
    Finding(
        "endotracheal_tube",
        "endotracheal tube",
        ("endotracheal tube", "et tube", "ett", "intubated", "intubation"),
        "device",
        "trachea_carina",
        {"tip": ("above_carina", "right_main_bronchus")},
    ),
    Finding(
        "enteric_tube",
        "enteric tube",
        (
            "enteric tube",
            "nasogastric tube",
            "ng tube",
            "orogastric tube",
            "og tube",
            "feeding tube",
            "dobhoff",
            "dobhoff tube",
        ),
        "device",
        "upper_abdomen",
        {"tip": ("stomach", "esophagus_coiled", "bronchus")},
    ),
    Finding(
        "central_venous_catheter",
        "central venous catheter",
        (
            "central venous catheter",
            "central line",
            "cvc",
            "internal jugular line",
            "ij line",
            "subclavian line",
            "central catheter",
        ),
        "device",
        "mediastinum",
        {"tip": ("low_svc", "cavoatrial_junction", "too_high")},
    ),
    Finding(
        "picc",
        "PICC line",
        ("picc", "picc line", "peripherally inserted central catheter"),
        "device",
        "mediastinum",
        {"tip": ("low_svc", "cavoatrial_junction", "too_high")},
    ),
    Finding(
        "chest_tube",
        "chest tube",
        ("chest tube", "pleural drain", "thoracostomy tube", "pigtail catheter", "pleural catheter"),
        "device",
        None,
        {"side": ("left", "right")},
    ),
    Finding(
        "pacemaker",
        "pacemaker",
        ("pacemaker", "pacer", "pacing leads", "pacemaker leads", "icd", "cardiac device", "aicd", "defibrillator"),
        "device",
        "cardiac_silhouette",
        {"leads": ("1", "2", "3")},
    ),
)

_REAL_ONLY: tuple[Finding, ...] = (
    Finding(
        "enlarged_cardiomediastinum",
        "enlarged cardiomediastinal silhouette",
        (
            "enlarged cardiomediastinal silhouette",
            "enlarged cardiomediastinum",
            "widened mediastinum",
            "mediastinal widening",
            "widening of the mediastinum",
            "mediastinal enlargement",
            "enlarged mediastinum",
            "widened superior mediastinum",
        ),
        "mediastinal",
        "mediastinum",
        {},
        "normal cardiomediastinal silhouette",
        plantable=False,
    ),
    Finding(
        "lung_opacity",
        "lung opacity",
        ("lung opacity", "opacity", "opacification", "density", "hazy opacity", "increased density"),
        "parenchymal",
        None,
        {"side": SIDES, "zone": ZONES, "lobe": LOBES},
        plantable=False,
        explained_by=(
            "consolidation",
            "nodule",
            "mass",
            "pulmonary_edema",
            "atelectasis",
            "pleural_effusion",
            "calcified_granuloma",
            "scarring",
            "interstitial_markings",
            "pleural_thickening",
            "hilar_prominence",
        ),
    ),
    Finding(
        "pleural_thickening",
        "pleural thickening",
        (
            "pleural thickening",
            "pleural plaque",
            "pleural plaques",
            "apical pleural thickening",
            "apical capping",
            "pleural calcification",
            "calcified pleural plaque",
            "thickened pleura",
        ),
        "pleural",
        None,
        {"side": SIDES, "zone": ZONES},
        plantable=False,
    ),
    Finding(
        "fracture",
        "fracture",
        ("fracture", "fractures", "compression fracture", "compression deformity", "fractured"),
        "bone",
        None,
        {"side": ("left", "right"), "site": FRACTURE_SITES},
        plantable=False,
        explained_by=("rib_fracture",),
    ),
    Finding(
        "calcified_granuloma",
        "calcified granuloma",
        (
            "calcified granuloma",
            "granuloma",
            "granulomas",
            "granulomata",
            "calcified nodule",
            "calcified nodules",
            "granulomatous disease",
            "calcified granulomatous disease",
            "healed granulomatous disease",
            "old granulomatous disease",
            "calcified lymph nodes",
            "calcified hilar lymph nodes",
            "calcified mediastinal lymph nodes",
            "calcified hilar nodes",
        ),
        "parenchymal",
        None,
        {"side": SIDES, "zone": ZONES},
        plantable=False,
    ),
    Finding(
        "scoliosis",
        "scoliosis",
        ("scoliosis", "dextroscoliosis", "levoscoliosis", "scoliotic curvature", "curvature of the spine"),
        "bone",
        None,
        {"severity": SEVERITIES},
        plantable=False,
    ),
    Finding(
        "kyphosis",
        "kyphosis",
        ("kyphosis", "kyphotic", "thoracic kyphosis", "kyphotic curvature"),
        "bone",
        None,
        {"severity": SEVERITIES},
        plantable=False,
    ),
    Finding(
        "degenerative_spine",
        "degenerative changes of the spine",
        (
            "degenerative changes of the spine",
            "degenerative changes of the thoracic spine",
            "degenerative disc disease",
            "spondylosis",
            "thoracic spondylosis",
            "osteophytes",
            "osteophyte",
            "osteophytosis",
            "spondylitic changes",
            "degenerative spine",
            "degenerative endplate changes",
        ),
        "bone",
        None,
        {"severity": SEVERITIES},
        plantable=False,
    ),
    Finding(
        "osteopenia",
        "osteopenia",
        (
            "osteopenia",
            "osteopenic",
            "osteoporosis",
            "osteoporotic",
            "demineralization",
            "demineralized",
            "decreased bone density",
            "decreased bone mineralization",
        ),
        "bone",
        None,
        {},
        "normal bone density",
        plantable=False,
    ),
    Finding(
        "hiatal_hernia",
        "hiatal hernia",
        ("hiatal hernia", "hiatus hernia", "hiatal hernias"),
        "mediastinal",
        "mediastinum",
        {"size": SIZES},
        plantable=False,
    ),
    Finding(
        "aortic_calcification",
        "aortic calcification",
        (
            "aortic calcification",
            "aortic calcifications",
            "calcified aorta",
            "calcified aortic knob",
            "calcified aortic arch",
            "aortic arch calcification",
            "aortic atherosclerosis",
            "atherosclerotic aorta",
            "atherosclerotic calcification",
            "atherosclerotic calcifications",
            "calcification of the aorta",
            "calcifications of the aorta",
            "atherosclerotic disease of the aorta",
            "atherosclerosis",
            "atherosclerotic vascular disease",
            "vascular calcification",
        ),
        "vascular",
        "mediastinum",
        {},
        plantable=False,
    ),
    Finding(
        "aortic_tortuosity",
        "tortuous aorta",
        (
            "tortuous aorta",
            "tortuous thoracic aorta",
            "aortic tortuosity",
            "tortuosity of the aorta",
            "tortuosity of the thoracic aorta",
            "ectatic aorta",
            "ectatic thoracic aorta",
            "aortic ectasia",
            "unfolded aorta",
            "unfolding of the aorta",
            "tortuous descending aorta",
        ),
        "vascular",
        "mediastinum",
        {},
        plantable=False,
    ),
    Finding(
        "scarring",
        "pulmonary scarring",
        (
            "scarring",
            "scar",
            "scars",
            "fibrosis",
            "pulmonary fibrosis",
            "fibrotic changes",
            "fibrotic",
            "parenchymal scarring",
            "pleural-parenchymal scarring",
            "pleuroparenchymal scarring",
            "fibrotic scarring",
            "cicatricial",
        ),
        "parenchymal",
        None,
        {"side": SIDES, "zone": ZONES},
        plantable=False,
    ),
    Finding(
        "hilar_prominence",
        "hilar prominence",
        (
            "hilar prominence",
            "prominent hila",
            "prominent hilum",
            "prominent hilar",
            "hilar enlargement",
            "enlarged hila",
            "enlarged hilum",
            "hilar fullness",
            "hilar adenopathy",
            "hilar lymphadenopathy",
            "prominence of the hila",
            "prominence of the hilum",
        ),
        "mediastinal",
        "hila",
        {"side": SIDES},
        plantable=False,
    ),
    Finding(
        "elevated_hemidiaphragm",
        "elevated hemidiaphragm",
        (
            "elevated hemidiaphragm",
            "elevation of the hemidiaphragm",
            "hemidiaphragm elevation",
            "diaphragmatic eventration",
            "eventration",
            "eventration of the hemidiaphragm",
        ),
        "lung_volume",
        "diaphragm",
        {"side": ("left", "right")},
        plantable=False,
    ),
    Finding(
        "interstitial_markings",
        "increased interstitial markings",
        (
            "increased interstitial markings",
            "interstitial markings",
            "interstitial prominence",
            "interstitial lung disease",
            "chronic interstitial changes",
            "interstitial changes",
            "reticular opacities",
            "reticular markings",
            "interstitial opacities",
            "increased bronchovascular markings",
            "prominent bronchovascular markings",
            "prominent interstitial markings",
            "coarse interstitial markings",
            "coarsened interstitial markings",
        ),
        "parenchymal",
        None,
        {"side": SIDES, "zone": ZONES},
        plantable=False,
        explained_by=("pulmonary_edema", "scarring"),
    ),
    Finding(
        "sternotomy_wires",
        "median sternotomy wires",
        (
            "median sternotomy wires",
            "sternotomy wires",
            "median sternotomy",
            "sternotomy",
            "sternal wires",
            "sternal sutures",
            "sternal wire",
            "cabg",
            "coronary artery bypass graft",
            "cardiac surgery",
        ),
        "device",
        "mediastinum",
        {},
        plantable=False,
    ),
    Finding(
        "surgical_clips",
        "surgical clips",
        (
            "surgical clips",
            "surgical clip",
            "vascular clips",
            "cholecystectomy clips",
            "clips",
            "surgical staples",
            "surgical sutures",
            "suture material",
            "axillary clips",
            "mediastinal clips",
        ),
        "device",
        None,
        {"side": SIDES},
        plantable=False,
    ),
    Finding(
        "stent",
        "stent",
        (
            "stent",
            "stents",
            "vascular stent",
            "coronary stent",
            "coronary stents",
            "tracheal stent",
            "esophageal stent",
        ),
        "device",
        None,
        {},
        plantable=False,
    ),
    Finding(
        "orthopedic_hardware",
        "orthopedic hardware",
        (
            "orthopedic hardware",
            "spinal fusion hardware",
            "spinal fusion",
            "fixation hardware",
            "surgical hardware",
            "shoulder arthroplasty",
            "fixation plate",
            "fixation screws",
            "kyphoplasty",
            "vertebroplasty",
        ),
        "device",
        None,
        {"side": SIDES},
        plantable=False,
    ),
)

FINDINGS: dict[str, Finding] = {f.key: f for f in (*_PLANTABLE, *_REAL_ONLY)}
"""Every finding of the vocabulary (real radiographs), plantable ones first."""
PLANTABLE_FINDINGS: dict[str, Finding] = {k: f for k, f in FINDINGS.items() if f.plantable}
"""The findings SynthCXR plants (and the mini models know), in their fixed order: never reorder or extend it
without retraining the mini model pack (its heads are indexed by this order)."""

TIP_PHRASES = {
    "above_carina": "with the tip above the carina",
    "right_main_bronchus": "with the tip in the right main bronchus",
    "stomach": "with the tip in the stomach",
    "esophagus_coiled": "coiled in the esophagus",
    "bronchus": "with the tip in a bronchus",
    "low_svc": "with the tip in the low SVC",
    "cavoatrial_junction": "with the tip at the cavoatrial junction",
    "too_high": "with the tip too high, in the brachiocephalic vein",
}

TIP_PATTERNS: dict[str, tuple[tuple[str, str], ...]] = {
    "enteric_tube": (
        ("esophagus_coiled", r"\bcoil|\besophag|\boesophag"),
        ("bronchus", r"\bbronch|\bairway|\btrache"),
        ("stomach", r"\bstomach\b|\bgastric\b|\bbelow the (?:left )?(?:hemi)?diaphragm|\bsubdiaphragm"),
    ),
    "endotracheal_tube": (
        ("right_main_bronchus", r"\bright main|\bmainstem|\bmain stem|\bbronch"),
        ("above_carina", r"\babove (?:the )?carina|\bcm above|\bappropriate|\bsatisfactory|\bstandard position"),
    ),
    "central_venous_catheter": (
        ("too_high", r"\btoo high|\bbrachiocephalic|\bhigh position|\bpositioned high|\bproximal|\binnominate"),
        ("cavoatrial_junction", r"\bcavo-?atrial|\batriocaval|\bjunction"),
        ("low_svc", r"\b(?:low|lower|distal)[ -]?(?:svc|superior vena cava)"),
    ),
}
TIP_PATTERNS["picc"] = TIP_PATTERNS["central_venous_catheter"]
"""How reports state each device's tip position: (tip value, regex) in the order they are tried. The report
labeler reads tips with them (in the clause of the mention) and the structured judge parses hypotheses."""

# Anatomical regions for localize-and-zoom; keys are what the agent and the tools say.
REGIONS: dict[str, str] = {
    "apex_left": "left lung apex",
    "apex_right": "right lung apex",
    "apices": "both lung apices",
    "upper_zone_left": "left upper zone",
    "upper_zone_right": "right upper zone",
    "mid_zone_left": "left mid zone",
    "mid_zone_right": "right mid zone",
    "lower_zone_left": "left lower zone",
    "lower_zone_right": "right lower zone",
    "lower_zones": "both lower zones",
    "costophrenic_angle_left": "left costophrenic angle",
    "costophrenic_angle_right": "right costophrenic angle",
    "costophrenic_angles": "both costophrenic angles",
    "hilum_left": "left hilum",
    "hilum_right": "right hilum",
    "hila": "both hila",
    "cardiac_silhouette": "cardiac silhouette",
    "mediastinum": "mediastinum",
    "trachea_carina": "trachea and carina",
    "diaphragm": "diaphragm",
    "upper_abdomen": "upper abdomen and stomach",
}


def get_finding(key: str) -> Finding:
    """Return the finding ``key`` or raise a ``KeyError`` that lists the known keys."""
    try:
        return FINDINGS[key]
    except KeyError:
        raise KeyError(f"unknown finding {key!r}; known: {', '.join(sorted(FINDINGS))}") from None


def describe_finding(key: str, attributes: dict[str, str] | None = None) -> str:
    """Render a finding with attributes as a clinical phrase, e.g. 'moderate right pleural effusion'."""
    finding = get_finding(key)
    attrs = dict(attributes or {})
    words: list[str] = []
    for name in ("severity", "size"):
        if name in attrs:
            words.append(attrs.pop(name))
    if "pattern" in attrs:
        words.append(attrs.pop("pattern"))
    if "side" in attrs:
        words.append(attrs.pop("side"))
    if "zone" in attrs:
        words.append(attrs.pop("zone") + " zone")
    text = " ".join([*words, finding.phrase])
    if "lobe" in attrs:
        text += f" in the {LOBE_NAMES.get(attrs.pop('lobe'), 'unknown lobe')}"
    if "rib" in attrs:
        text = text.replace("rib fracture", f"fracture of rib {attrs.pop('rib')}")
    if "direction" in attrs:
        text += f" to the {attrs.pop('direction')}"
    if "tip" in attrs:
        text += " " + TIP_PHRASES.get(attrs.pop("tip"), "")
    if "leads" in attrs:
        text += f" with {attrs.pop('leads')} lead(s)"
    return text.strip()
