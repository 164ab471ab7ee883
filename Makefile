# AutoSCOPE: `make demo` runs the whole assembly line on recipes/demo.yaml; `make test` runs the tests.
# Each target bootstraps .venv itself (Python 3.11, pip and a C compiler are all it needs).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DVC_NO_ANALYTICS := 1

.PHONY: demo test test-all bench bench-full lint clean-demo

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m autoscope.demo

test: $(STAMP)
	$(BIN)/ruff check autoscope tests benchmarks
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ''

bench: $(STAMP)
	$(BIN)/python benchmarks/tiles.py
	$(BIN)/python benchmarks/loader.py
	$(BIN)/python benchmarks/infer.py
	$(BIN)/python benchmarks/segment.py
	$(BIN)/python benchmarks/detect.py

bench-full: $(STAMP)
	$(BIN)/python benchmarks/tiles.py --preset full --out outputs/bench/tiles_full.json

lint: $(STAMP)
	$(BIN)/ruff check autoscope tests benchmarks

clean-demo:
	rm -rf workspaces/demo
	for l in data/demo outputs/demo/infer; do if [ -L $$l ]; then rm $$l; fi; done
