# Two commands do all set-up on a fresh machine:
#   make demo   — the whole of TextSSR on the embedded tiny corpus (CPU, no downloads)
#   make test   — the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install install-str demo str-demo test app bench rehearse clean-demo

$(STAMP): requirements.txt tools/system_deps.sh pyproject.toml setup.py textssr/data/_jpeg_window.c diffusers/pyproject.toml
	bash tools/system_deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

# OpenOCR's recognition trainer for train_str.py (docs/str.md): its package without its declared dependencies
# (requirements-str.txt says why), into the same .venv.
STR_STAMP := $(VENV)/.installed-str
$(STR_STAMP): $(STAMP) requirements-str.txt
	$(BIN)/python -m pip install -r requirements-str.txt
	$(BIN)/python -m pip install --no-deps openocr-python==0.1.5
	touch $(STR_STAMP)

install-str: $(STR_STAMP)

test: $(STAMP) $(STR_STAMP)
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/python -m textssr.demo --python $(BIN)/python

# After `make demo`: TextSSR-F from the demo's checkpoints, a tiny OpenOCR recogniser trained on the tiny corpus's
# real crops, on that TextSSR-F and on both, evaluated on the tiny bench's real crops (docs/str.md).
str-demo: $(STR_STAMP)
	$(BIN)/python -m textssr.demo.recognizer --python $(BIN)/python

# The photo editor in the browser on the tiny demo's checkpoints (run `make demo` first): http://127.0.0.1:7860
app: $(STAMP)
	$(BIN)/python app.py --config configs/tiny/infer_cfg.py

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# The shipped full-size configs on SD 2.1-shaped random models, on the CPU: VAE, CDM step 1 (+ resume), CDM step 2,
# infer, synthesize; a table of time, peak memory and checkpoint size (docs/training.md). ~17 GB RAM, ~45 GB disk
# under $$TMPDIR, ~30 minutes on 2 cores. Not in CI; run it before submitting a change to training or generation.
rehearse: $(STAMP)
	$(BIN)/python benchmarks/rehearse.py

clean-demo:
	rm -rf data/tiny model/tiny output/tiny
