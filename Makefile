# CKD edge kit. `make demo` and `make test` each do their own set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CKD := $(VENV)/bin/ckd
GST_DEBS := gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
	gstreamer1.0-plugins-ugly gstreamer1.0-libav gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 \
	libgirepository1.0-dev libcairo2-dev pkg-config

LOCK := requirements.lock

.PHONY: venv sysdeps demo test lint bench lock clean device-check device-check-graphs

# GStreamer comes from the OS (as JetPack ships it). As root we install it; otherwise we print the command.
sysdeps:
	@if gst-inspect-1.0 --version >/dev/null 2>&1 && pkg-config --exists gobject-introspection-1.0 cairo \
		&& gst-inspect-1.0 x264enc >/dev/null 2>&1; then echo "sysdeps: GStreamer present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(GST_DEBS); \
	else echo "sysdeps: GStreamer missing; run: sudo apt-get install -y $(GST_DEBS)"; exit 1; fi

# Installs come from the lock: the exact versions the test suite passed with.
$(VENV)/.installed: pyproject.toml $(LOCK)
	$(MAKE) sysdeps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c $(LOCK) pip
	$(PY) -m pip install -q -c $(LOCK) torch==2.13.0
	$(PY) -m pip install -q -c $(LOCK) -e ".[host,dev,gst]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(CKD) demo --out out/demo

test: venv
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: venv
	$(PY) -m pytest -q -m timing
	$(CKD) bench --keep-ratios 1.0,0.7 --backends torch,onnxruntime --precisions fp32,int8 --peers \
		--json out/bench/bench.json --markdown out/bench/bench.md --plot out/bench/bench.png

# Device acceptance (Jetson or NVIDIA GPU host with TensorRT). The graphs come from the host profile:
#   host:   make device-check-graphs          (then copy out/device-check/graphs to the device's checkout)
#   device: make device-check                 (a venv over JetPack's Python: its TensorRT, cv2, numpy, gi)
DEVICE_PYTHON ?= python3
DEVICE_VENV ?= .venv-device
DEVICE_CHECK ?= out/device-check

device-check-graphs: venv
	$(PY) -m edge.trt.device_check --prepare --graphs $(DEVICE_CHECK)/graphs

device-check:
	@test -d $(DEVICE_CHECK)/graphs/base/int8 || { echo "device-check: no graphs in $(DEVICE_CHECK)/graphs;" \
		"run 'make device-check-graphs' on the host and copy that folder here"; exit 2; }
	$(DEVICE_PYTHON) -m venv --system-site-packages $(DEVICE_VENV)
# an editable install of a pyproject-only project needs pip >= 21.3 (PEP 660); JetPack 5's venv has pip 20.0.2,
# which does not backtrack when an index omits Requires-Python: < 25.1 keeps it to pips that run on Python 3.8
	$(DEVICE_VENV)/bin/pip install -q "pip>=21.3,<25.1"
	$(DEVICE_VENV)/bin/pip install -q --no-deps -e .
	$(DEVICE_VENV)/bin/python -c "import edge.deploy.scripts as s, sys; sys.stdout.write(s.REQUIREMENTS_EDGE)" \
		> $(DEVICE_VENV)/requirements-edge.txt
	$(DEVICE_VENV)/bin/pip install -q --no-deps -r $(DEVICE_VENV)/requirements-edge.txt
	$(DEVICE_VENV)/bin/python -m edge.trt.device_check --graphs $(DEVICE_CHECK)/graphs --out $(DEVICE_CHECK)/report.json

# Re-resolve every dependency to the newest release pyproject.toml allows, in a scratch venv, and rewrite the
# lock. Upgrades happen only here: run `make test` on the new lock before committing it.
lock: sysdeps
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -q --upgrade pip
	.lock-venv/bin/pip install -q torch==2.13.0
	.lock-venv/bin/pip install -q -e ".[host,dev,gst]"
	{ echo "# Exact versions \`make test\` last passed with (pip constraints; \`make venv\` installs with -c this file)."; \
	  echo "# Refresh on purpose with \`make lock\`, then run \`make test\` and commit the result."; \
	  .lock-venv/bin/pip freeze --all --exclude-editable | grep -v '^#' | sed 's/+cpu$$//'; } > $(LOCK)
	rm -rf .lock-venv
	@echo "lock: $(LOCK) rewritten; now run: make clean test"

clean:
	rm -rf $(VENV) .lock-venv out build *.egg-info
