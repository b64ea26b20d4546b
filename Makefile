# gpubench: `make demo` and `make test` do all the set-up on a fresh machine.
# With an NVIDIA driver (nvidia-smi on PATH) the CUDA builds of the frameworks are
# installed; elsewhere the CPU builds (pinned in constraints/cpu.txt: an unpinned
# torch pulls a multi-GB CUDA build).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

HAS_NVIDIA := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo yes)
ifeq ($(HAS_NVIDIA),yes)
  # CUDA builds. tensorflow[and-cuda] and onnxruntime-gpu bring their CUDA libraries.
  PIP_ARGS := -e '.[torch,onnx-gpu,tensorrt,dev]' 'tensorflow[and-cuda]>=2.16'
else
  # CPU builds: torch 2.13.0+cpu, tensorflow-cpu, onnxruntime (CPU).
  PIP_ARGS := -c constraints/cpu.txt -e '.[torch,onnx,dev]' 'tensorflow-cpu>=2.16'
endif

.PHONY: install demo test bench native browser clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints/cpu.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(PIP_ARGS)
	touch $@

# gcc builds the NVML test double (tests/native/); install it where it is missing.
native:
	@command -v gcc >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq gcc)

# Headless Chromium renders the HTML report in its test.
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium)

demo: install
	$(VENV)/bin/gpubench run --workload mnist --backend auto

test: install native browser
	$(PY) -m pytest

bench: install
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/sampler_overhead.py
	$(PY) benchmarks/isolation_overhead.py
	$(PY) benchmarks/ort_vs_torch.py
	$(PY) benchmarks/tf_vs_keras_fit.py

clean:
	rm -rf $(VENV) build src/*.egg-info
