# Two entry points do all set-up on a fresh machine:
#   make demo   creates .venv and runs the whole pipeline on the bundled corpus
#   make test   creates .venv and runs lint, format check and the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := runs/demo

.PHONY: env demo test test-all lint format clean

env: $(STAMP)

# torch is pinned to the CPU wheel on disk; an unpinned torch pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/python -m pytest -q

# The demo pipeline: each stage is a file target on its manifest, so `make demo`
# reruns only what is missing.
demo: $(DEMO)/anneal/manifest.json
	@for phase in pretrain reasoning anneal; do $(BIN)/python -c "import json, sys; \
	m = json.load(open('$(DEMO)/' + sys.argv[1] + '/manifest.json')); v = m['validation']; \
	print(f\"{m['phase']:>9}: held-out loss {v['first']['val_loss']:.3f} (step 0) -> \
	{v['last']['val_loss']:.3f} (step {v['last']['step']})\")" $$phase; done

$(DEMO)/clean/manifest.json: $(STAMP)
	$(BIN)/pangu data-clean --config demo --out $(DEMO)/clean --force

$(DEMO)/tokenizer/manifest.json: $(DEMO)/clean/manifest.json
	$(BIN)/pangu tokenizer-build --config demo --input $(DEMO)/clean --out $(DEMO)/tokenizer --force

$(DEMO)/tokens/manifest.json: $(DEMO)/tokenizer/manifest.json
	$(BIN)/pangu tokenize --config demo --input $(DEMO)/clean --tokenizer $(DEMO)/tokenizer \
		--out $(DEMO)/tokens --force

$(DEMO)/pretrain/manifest.json: $(DEMO)/tokens/manifest.json
	$(BIN)/pangu pretrain --config demo --phase general --input $(DEMO)/tokens \
		--out $(DEMO)/pretrain --resume

# Each later phase starts from the previous phase's final checkpoint (--init).
$(DEMO)/reasoning/manifest.json: $(DEMO)/pretrain/manifest.json
	$(BIN)/pangu pretrain --config demo --phase reasoning --init $(DEMO)/pretrain \
		--input $(DEMO)/tokens --out $(DEMO)/reasoning --resume

$(DEMO)/anneal/manifest.json: $(DEMO)/reasoning/manifest.json
	$(BIN)/pangu pretrain --config demo --phase anneal --init $(DEMO)/reasoning \
		--input $(DEMO)/tokens --out $(DEMO)/anneal --resume

clean:
	rm -rf $(VENV) runs
