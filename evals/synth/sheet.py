"""Contact sheet: a normal image and one image of each finding at moderate severity, labelled."""

from __future__ import annotations

from pathlib import Path

from evals.synth.findings import PlantedFinding

SHEET_FINDINGS: list[tuple[str, list[PlantedFinding]]] = [
    ("normal", []),
    ("pleural effusion (R, moderate)", [PlantedFinding(finding="pleural_effusion")]),
    ("cardiomegaly (moderate)", [PlantedFinding(finding="cardiomegaly")]),
    ("pneumothorax (L, moderate)", [PlantedFinding(finding="pneumothorax", attributes={"side": "left"})]),
    ("consolidation (RUL)", [PlantedFinding(finding="consolidation", attributes={"lobe": "RUL"})]),
    ("consolidation (LLL)", [PlantedFinding(finding="consolidation", attributes={"lobe": "LLL"})]),
    ("nodule (R upper, moderate)", [PlantedFinding(finding="nodule")]),
    ("mass (L mid, moderate)", [PlantedFinding(finding="mass", attributes={"side": "left", "zone": "mid"})]),
    ("pulmonary edema (moderate)", [PlantedFinding(finding="pulmonary_edema")]),
    ("atelectasis (plate-like)", [PlantedFinding(finding="atelectasis")]),
    ("low lung volumes", [PlantedFinding(finding="low_lung_volumes")]),
    ("hyperinflation", [PlantedFinding(finding="hyperinflation")]),
    ("mediastinal shift (right)", [PlantedFinding(finding="mediastinal_shift")]),
    ("rib fracture (R 6th)", [PlantedFinding(finding="rib_fracture")]),
    ("ET tube (above carina)", [PlantedFinding(finding="endotracheal_tube")]),
    (
        "ET tube (R main bronchus)",
        [PlantedFinding(finding="endotracheal_tube", attributes={"tip": "right_main_bronchus"})],
    ),
    ("NG tube (stomach)", [PlantedFinding(finding="enteric_tube")]),
    ("NG tube (bronchus)", [PlantedFinding(finding="enteric_tube", attributes={"tip": "bronchus"})]),
    ("CVC (low SVC)", [PlantedFinding(finding="central_venous_catheter")]),
    ("PICC (low SVC)", [PlantedFinding(finding="picc")]),
    ("chest tube (R)", [PlantedFinding(finding="chest_tube")]),
    ("pacemaker (2 leads)", [PlantedFinding(finding="pacemaker")]),
    ("AP view, normal", []),
    ("normal, another seed", []),
]


def contact_sheet(
    path: Path | str, size: int = 256, seed: int = 0, columns: int = 6, cache_dir: Path | None = None
) -> Path:
    """Render :data:`SHEET_FINDINGS` (same patient seed, PA) into one labelled PNG grid at ``path``."""
    from PIL import Image, ImageDraw

    from evals.synth.render import get_renderer

    renderer = get_renderer(cache_dir)
    tiles = []
    for label, findings in SHEET_FINDINGS:
        view = "AP" if label.startswith("AP") else "PA"
        s = seed + 7 if "another" in label else seed
        sample = renderer.render(findings, s, size, view, with_report=False)
        tile = Image.fromarray(sample.image).convert("RGB")
        draw = ImageDraw.Draw(tile)
        draw.rectangle((0, 0, size, 14), fill=(0, 0, 0))
        draw.text((3, 2), label, fill=(255, 255, 0))
        tiles.append(tile)
    rows = (len(tiles) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * size, rows * size))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * size, (i // columns) * size))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
