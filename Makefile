# pvwind-inspect. Every target creates or reuses .venv and installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check
export YOLO_OFFLINE ?= 1

HOST  ?= 127.0.0.1
PORT  ?= 8000
# make train EPOCHS=1 IMGSZ=128 ... ; anything else: TRAIN_ARGS="--fraction 0.1"
TRAIN_FLAGS := $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(IMGSZ),--imgsz $(IMGSZ)) $(if $(HOURS),--hours $(HOURS)) $(TRAIN_ARGS)

.PHONY: serve test data train bench lint clean-venv review-tools

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip

$(VENV)/.base: $(VENV)/bin/python pyproject.toml
	$(PIP) -e .
	touch $@

$(VENV)/.serve: $(VENV)/.base
	$(PIP) -e '.[serve,openvino,pdf]'
	touch $@

$(VENV)/.all: $(VENV)/.base
	$(PIP) -e '.[serve,rescore,pdf,openvino,train,distributed,dev,postgres]'
	touch $@ $(VENV)/.serve

# System tools the tests use: exiftool (the independent check of radiometric temperatures).
# Installed with apt when missing and run as root; elsewhere those tests skip and say why.
$(VENV)/.system: | $(VENV)/bin/python
	@command -v exiftool >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libimage-exiftool-perl >/dev/null) \
		|| echo "exiftool not installed (apt-get install libimage-exiftool-perl): its cross-checks will skip"; }
	touch $@

# A browser for tests/test_browser.py (Debian's chromium, driven by Playwright) and Pango for PDF reports.
$(VENV)/.browser: | $(VENV)/bin/python
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium libpango-1.0-0 libpangoft2-1.0-0 >/dev/null; \
	else echo "no Chromium and not root: tests/test_browser.py will skip (apt-get install chromium)"; fi
	touch $@

serve: $(VENV)/.serve
	$(VENV)/bin/pvwind serve --host $(HOST) --port $(PORT)

test: $(VENV)/.all $(VENV)/.system $(VENV)/.browser review-tools
	$(PY) -m pytest -q -x --durations=15 tests

data: $(VENV)/.base
	$(VENV)/bin/pvwind data build

train: $(VENV)/.all
	$(VENV)/bin/pvwind train $(TRAIN_FLAGS)

bench: $(VENV)/.all
	$(PY) bench/inference.py
	$(PY) bench/train_speed.py
	$(PY) bench/rescore.py
	$(PY) bench/serve_load.py

# Label Studio and Datumaro for the review round-trip tests, in their own venv: installed into
# .venv they would downgrade numpy / OpenCV / Pillow. Without it those two tests skip and say so.
review-tools: build/review-venv/.installed

build/review-venv/.installed:
	@($(PYTHON) -m venv build/review-venv && \
	  build/review-venv/bin/pip install --quiet --disable-pip-version-check label-studio label-studio-sdk datumaro && \
	  touch $@) || echo "Label Studio / Datumaro not installed: the review round-trip tests will skip"

lint: $(VENV)/.all
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean-venv:
	rm -rf $(VENV)
