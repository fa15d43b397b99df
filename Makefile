# Two commands do everything on a fresh clone: `make demo` and `make test`.
# Both create (or reuse) .venv and install the project into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first, pinned to the build this project is tested with (override: make TORCH_SPEC=...)
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
RUN_DIR ?= runs/demo
STAMP := $(VENV)/.synthdata-installed

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/synthdata demo run_dir=$(RUN_DIR)

test: $(STAMP)
	$(VENV)/bin/ruff check synthdata tests tools
	$(VENV)/bin/lint-imports
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --durations=15 tests

clean:
	rm -rf $(VENV) runs
