"""The offline model pack: training and evaluation of ``mini-cxr-clip`` and the ``mini`` describer on SynthCXR.

Inference lives in ``tools/scorers/mini.py`` and ``tools/describers/mini.py``; this package renders the
training and evaluation images (SynthCXR), trains the model and measures its quality gate.
"""
