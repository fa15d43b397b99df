"""Experiments built from the pipeline's commands: `synthdata study` (variants x seeds, shared
generator and production runs, paired intervals and verdicts)."""
