"""Evaluation layer: the SynthCXR simulator (``synth``), training of the offline model pack (``mini``) and the
benchmarks (``bench``: suites, runner, judges, metrics; ``bench.components``: component benchmarks)."""
