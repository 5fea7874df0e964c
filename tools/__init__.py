"""Tools layer: domain model, settings, data I/O, model backends, scoring, reports, regions.

Nothing here imports ``agent``, ``graphs`` or ``evals``; nothing heavy is loaded at import time.
"""
