"""Plumbing every stage shares: the recipe schema and its loading (`recipe`), the data contract's
types and errors (`contract`), checkpoints, run directories, seeds, the Accelerator and threads
(`runtime`), entry-point error handling, resizing, palettes and pictures."""
