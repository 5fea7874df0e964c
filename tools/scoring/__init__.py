"""Scoring and statistics: how well each hypothesis tells group A from group B, and what may explain it.

* :mod:`tools.scoring.engine` - every image against every hypothesis in one matrix product (cosine, or the
  softmax over a contrast pair), and :func:`~tools.scoring.engine.score_texts` that embeds the texts first;
* :mod:`tools.scoring.statistics` - AUROC, DeLong CI, Mann-Whitney p, Benjamini-Hochberg q, evidence studies;
* :mod:`tools.scoring.contrast` - contrast prompts for negation-aware scoring;
* :mod:`tools.scoring.confounders` - the confounder check (metadata, within-group correlations).
"""

from tools.scoring.engine import score_hypotheses, score_matrix, score_texts
from tools.scoring.statistics import auroc_statistics, benjamini_hochberg, evidence_indices

__all__ = [
    "auroc_statistics",
    "benjamini_hochberg",
    "evidence_indices",
    "score_hypotheses",
    "score_matrix",
    "score_texts",
]
