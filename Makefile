# Set-up happens on first use: system libraries ffcv compiles against, .venv, Python packages.
PYTHON ?= python3
# .venv holds about 6.5 GiB once installed (measured on x86_64): the CUDA build of torch and its libraries.
VENV ?= .venv
VENV_NEEDS_GB := 8
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# chromium + its driver: tests/test_app.py drives the web demo in a headless browser.
# libjpeg-dev + libopencv-dev: train/crop_resize.cpp, the training decoder's compiled helper, too.
APT_PACKAGES := libturbojpeg0-dev libjpeg-dev libopencv-dev pkg-config chromium chromium-driver

SAMPLE := data/sample
SAMPLE_FFCV := data/sample_ffcv

.PHONY: setup system-deps test demo sample bench ablation ablation-demo clean gpu-check gpu-bundle

setup: $(STAMP)

system-deps:
	@if ! (command -v pkg-config >/dev/null && pkg-config --exists libturbojpeg libjpeg opencv4 \
	       && command -v chromium >/dev/null && command -v chromedriver >/dev/null); then \
	  echo "installing $(APT_PACKAGES) (ffcv and our decoder compile against them; the app test drives chromium)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi

# Editing the C++ decoder helper rebuilds it (pip compiles it in place, beside the source).
$(STAMP): pyproject.toml setup.py train/crop_resize.cpp
	@$(MAKE) --no-print-directory system-deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c 'import torch' 2>/dev/null || $(PYTHON) -c "import shutil, sys; free = shutil.disk_usage('$(VENV)').free / 2**30; \
	  sys.exit(0 if free >= $(VENV_NEEDS_GB) else f'make: {free:.1f} GiB free where $(VENV) lives and its packages need about $(VENV_NEEDS_GB) GiB (torch is a CUDA build with its libraries); free some space or point VENV= at a larger disk')"
	$(PY) -m pip install -q --no-cache-dir --upgrade pip
	$(PY) -m pip install -q --no-cache-dir -e '.[dev]'
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

# The same recipe at 4 and 8 epochs on the sample (CPU, a few minutes); train/ablate.py prints a
# table and writes report.md, report.csv and the plots into runs/ablation-demo/.
ablation-demo: sample
	rm -rf runs/ablation-demo
	$(PY) train/ablate.py --config-file cpu_sample.yaml --epochs 4,8 --out runs/ablation-demo \
	    --data.train_dataset=$(SAMPLE_FFCV)/train.beton --data.val_dataset=$(SAMPLE_FFCV)/val.beton

# Benchmarks (bench/RESULTS.md): loader, converter and model throughput, on the built-in sample
# and on real photographs cut from Debian's wallpaper packages; time to accuracy against a plain
# torchvision script on Debian's Fashion-MNIST; the mirror's cost; the converter and loaders at
# 40k and ImageNet's 1.28M samples (bench/scale.py, the longest). Each prints a JSON line last.
PHOTOS := data/photos
FASHION := data/fashion
BENCH_DEBS := gnome-backgrounds plasma-workspace-wallpapers dataset-fashion-mnist
bench: sample
	@dpkg -s $(BENCH_DEBS) >/dev/null 2>&1 || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(BENCH_DEBS) >/dev/null; }
	@test -d $(PHOTOS) || $(PY) bench/photos.py --out $(PHOTOS)
	@test -d $(FASHION) || $(PY) bench/fashion.py --out $(FASHION)
	$(PY) bench/loader.py --image-folder $(SAMPLE)/train
	$(PY) bench/loader.py --image-folder $(PHOTOS) --strong
	$(PY) bench/decoder.py --image-folder $(PHOTOS)
	$(PY) bench/convert.py --image-folder $(SAMPLE)/train
	$(PY) bench/convert.py --image-folder $(PHOTOS)
	$(PY) bench/train_step.py
	$(PY) bench/augment.py
	$(PY) bench/augment_batch.py
	$(PY) bench/mirror.py
	$(PY) bench/end_to_end.py --data $(FASHION)
	$(PY) bench/scale.py

clean:
	rm -rf data runs .pytest_cache

# The GPU check (bench/gpu_check.py): the CUDA tests and ResNet-50D throughput, a JSON line last.
# On an air-gapped node, `make gpu-check BUNDLE=DIR` (or `python3 DIR/build_and_check.py`) first
# builds, with no network, from the folder `make gpu-bundle` wrote on a connected machine.
GPU_BUNDLE := gpu-bundle
gpu-check: $(if $(BUNDLE),,$(STAMP))
	$(if $(BUNDLE),$(PYTHON) $(BUNDLE)/build_and_check.py,$(PY) bench/gpu_check.py)

gpu-bundle: $(STAMP)
	$(PY) bench/gpu_bundle.py --out $(GPU_BUNDLE)
