# Set-up happens on first use: system libraries ffcv compiles against, .venv, Python packages.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PACKAGES := libturbojpeg0-dev libopencv-dev pkg-config

SAMPLE := data/sample
SAMPLE_FFCV := data/sample_ffcv

.PHONY: setup system-deps test demo sample bench ablation clean

setup: $(STAMP)

system-deps:
	@if ! (command -v pkg-config >/dev/null && pkg-config --exists libturbojpeg opencv4); then \
	  echo "installing $(APT_PACKAGES) (ffcv compiles against them)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

test: $(STAMP)
	$(PY) -m pytest -q

sample: $(STAMP)
	$(PY) convert/make_sample.py --out $(SAMPLE)
	$(PY) convert/write_imagenet.py --cfg.data_dir=$(SAMPLE) --cfg.split=both \
	    --cfg.write_path=$(SAMPLE_FFCV)/ --cfg.max_resolution=256

# Generate the built-in sample, convert it, train on CPU; the last line is `top_1: <fraction>`.
demo: sample
	rm -rf runs/demo
	$(PY) train/train_imagenet.py --config-file cpu_sample.yaml \
	    --data.train_dataset=$(SAMPLE_FFCV)/train.beton --data.val_dataset=$(SAMPLE_FFCV)/val.beton \
	    --logging.folder=runs/demo

clean:
	rm -rf data runs .pytest_cache
