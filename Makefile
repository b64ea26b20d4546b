# gpubench: `make demo` and `make test` do all the set-up on a fresh machine.
# With an NVIDIA driver (nvidia-smi on PATH) the CUDA builds of the frameworks are
# installed; elsewhere the CPU builds (torch pinned by constraints/cpu.txt).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

HAS_NVIDIA := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo yes)
ifeq ($(HAS_NVIDIA),yes)
  CONSTRAINTS :=
else
  CONSTRAINTS := -c constraints/cpu.txt
endif
EXTRAS := torch,dev

.PHONY: install demo test bench native clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints/cpu.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(CONSTRAINTS) -e '.[$(EXTRAS)]'
	touch $@

# gcc builds the NVML test double (tests/native/); install it where it is missing.
native:
	@command -v gcc >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq gcc)

demo: install
	$(VENV)/bin/gpubench run --workload mnist --backend auto

test: install native
	$(PY) -m pytest

bench: install
	$(PY) benchmarks/overhead.py

clean:
	rm -rf $(VENV) build src/*.egg-info
