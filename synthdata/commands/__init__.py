"""The commands, one module each: `main(argv) -> exit code` (`synthdata.cli` lists them). They are
run by `synthdata COMMAND`, or through their launch files `synthdata/COMMAND.py` (`accelerate launch
synthdata/produce.py ...`, `python -m synthdata.produce ...`), which hold no code of their own."""

# the modules other folders may import (tests/test_public_api.py checks it)
PUBLIC_MODULES = (
    "check",
    "compare",
    "config",
    "demo",
    "demo_report",
    "evaluate",
    "evaluate_fid",
    "evaluate_fidelity",
    "evaluate_layouts",
    "evaluate_miou",
    "export",
    "inspection",
    "produce",
    "refine",
    "segment",
    "study",
    "train",
    "translate",
)
