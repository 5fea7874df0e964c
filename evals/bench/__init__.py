"""Benchmarks: RadDiffBench, SynthDiffBench and any RadDiff JSONL pair file; runner, judges, metrics, sweeps.

``raddiff bench run SUITE`` runs the agent on every pair of a suite (a thread pool sharing the model
backends), judges the ranked hypotheses and writes one result file per pair as soon as it is done, so an
interrupted run resumes where it stopped. ``raddiff bench report`` rebuilds the tables, ``raddiff bench
reproduce`` regenerates ``evals/RESULTS.md`` offline.
"""
