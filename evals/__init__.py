"""Evaluation layer and command line: benchmarks, judges, SynthCXR, ``raddiff`` CLI."""
