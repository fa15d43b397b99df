"""The commands, one module each: `main(argv) -> exit code` (`synthdata.cli` lists them). They are
run by `synthdata COMMAND`, or through their launch files `synthdata/COMMAND.py` (`accelerate launch
synthdata/produce.py ...`, `python -m synthdata.produce ...`), which hold no code of their own."""
