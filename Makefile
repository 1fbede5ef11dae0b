# Two commands do all set-up on a fresh machine:
#   make demo   — the whole of TextSSR on the embedded tiny corpus (CPU, no downloads)
#   make test   — the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test app bench clean-demo

$(STAMP): requirements.txt tools/system_deps.sh pyproject.toml setup.py textssr/data/_jpeg_window.c diffusers/pyproject.toml
	bash tools/system_deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/python -m textssr.demo --python $(BIN)/python

# The photo editor in the browser on the tiny demo's checkpoints (run `make demo` first): http://127.0.0.1:7860
app: $(STAMP)
	$(BIN)/python app.py --config configs/tiny/infer_cfg.py

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean-demo:
	rm -rf data/tiny model/tiny output/tiny
