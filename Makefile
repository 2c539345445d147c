# Two commands set everything up on a fresh machine: `make quickstart` and `make test`.
PYTHON_SYSTEM ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
SYNTHETIC := data/synthetic
QUICKSTART_CONFIG := experiments/mask_rcnn/synthetic.yaml
RUN_ID := quickstart-$(shell date +%Y%m%d-%H%M%S)

.PHONY: venv quickstart test test-slow lint benchmark

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON_SYSTEM) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

venv: $(INSTALLED)

$(SYNTHETIC)/annotations/instances_val.json: $(INSTALLED) $(wildcard datamodules/synthetic/*.py)
	$(BIN)/zoo synthetic --out $(SYNTHETIC) --train-images 600 --val-images 100 --size 128 --seed 0 \
		--formats coco,panoptic,densepose,pix2pix,cyclegan,sr,style,classes,faces

# Writes the synthetic world, trains Mask R-CNN on it on the CPU, evaluates the last checkpoint with
# pycocotools and prints box/mask AP and where the W&B files and checkpoints are.
quickstart: $(SYNTHETIC)/annotations/instances_val.json
	$(BIN)/zoo fit --config $(QUICKSTART_CONFIG) --run_id $(RUN_ID)
	$(BIN)/zoo validate --config $(QUICKSTART_CONFIG) --run_id $(RUN_ID) --ckpt_path last

# Style first (fails fast), then the fast suite.
test: lint
	$(BIN)/pytest -m "not slow" -q

test-slow: $(INSTALLED)
	$(BIN)/pytest -m slow -q

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

benchmark: $(INSTALLED)
	$(BIN)/python benchmarks/mask_rcnn.py
	$(BIN)/python benchmarks/heatmaps.py
	$(BIN)/python benchmarks/gans.py
