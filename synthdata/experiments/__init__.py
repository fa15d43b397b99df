"""Experiments built from the pipeline's commands: `synthdata study` (variants x seeds, shared
generator and production runs, paired intervals and verdicts)."""

# the modules other folders may import (tests/test_public_api.py checks it);
# internal: cells, cluster, jobs, study_keys, study_migration, study_report, variants
PUBLIC_MODULES = (
    "plan",
    "study",
)
