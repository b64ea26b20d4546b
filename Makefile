# gpubench: `make demo` and `make test` do all the set-up on a fresh machine.
# With an NVIDIA driver (nvidia-smi on PATH) `make install` takes the CUDA 13 builds of
# torch and ONNX Runtime, and nothing else that could break; elsewhere the CPU builds
# (pinned in constraints/cpu.txt: an unpinned torch pulls a multi-GB CUDA build).
#
#   make install           .venv: gpubench + torch + ONNX Runtime (+ tensorflow-cpu on CPU machines)
#   make install-tensorrt  TensorRT 10 (CUDA 13 build, NVIDIA's index) into .venv; NVIDIA machines only
#   make install-tf        .venv-tf: gpubench + TensorFlow in its own environment
#                          (tensorflow[and-cuda] is a CUDA 12 build: its cuDNN/NCCL wheels would
#                          overwrite torch's CUDA 13 ones in a shared environment)
#   make docs              the reference (docs/) as a site on 127.0.0.1:8000 (mkdocs serve)
#   make slurm-up          a one-node Slurm cluster on this machine (tools/slurm/up.sh: munged,
#                          MariaDB + slurmdbd, slurmctld, slurmd at 127.0.0.1; root, no systemd);
#                          make slurm-down stops it
#   make gpu-check         the one-call hardware check (benchmarks/gpu_check.py) on the
#                          machine's own python3: installs nothing, needs no network

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
VENV_TF ?= .venv-tf
PY_TF := $(VENV_TF)/bin/python
STAMP_TF := $(VENV_TF)/.installed
# gpu-check runs on the interpreter the GPU machine already has (torch with CUDA, pandas).
GPU_CHECK_PYTHON ?= python3
# TensorRT 10 built for CUDA 13, as torch is (10.13.2 is the first 10.x with CUDA 13).
# TensorRT 11 removed the weakly typed builder APIs; gpubench's engine build is written
# and tested against 10.x. The wheels come from NVIDIA's own index.
TENSORRT_SPEC ?= tensorrt-cu13>=10.13.2,<11
TENSORRT_INDEX ?= https://pypi.nvidia.com

HAS_NVIDIA := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo yes)
ifeq ($(HAS_NVIDIA),yes)
  # CUDA 13 builds of torch and onnxruntime-gpu (one CUDA major in one environment).
  PIP_ARGS := -e '.[torch,onnx-gpu,dev]'
  TF_PIP_ARGS := -e '.[dev]' 'tensorflow[and-cuda]>=2.16'
else
  # CPU builds: torch 2.13.0+cpu, tensorflow-cpu, onnxruntime (CPU).
  PIP_ARGS := -c constraints/cpu.txt -e '.[torch,onnx,dev]' 'tensorflow-cpu>=2.16'
  TF_PIP_ARGS := -e '.[dev]' 'tensorflow-cpu>=2.16'
endif

.PHONY: install install-tensorrt install-tf gpu-check demo test docs bench native browser slurm-install slurm-up slurm-down clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints/cpu.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(PIP_ARGS)
	touch $@

# TensorRT into the existing .venv, after checks, holding every installed package at its
# version (a constraints file written from pip freeze): a failure (NVIDIA's index
# unreachable, no matching build) is one line on stderr and changes nothing else.
ifeq ($(HAS_NVIDIA),yes)
install-tensorrt: install
	@$(PY) -c 'import sys, torch; cuda = torch.version.cuda or ""; sys.exit(0 if cuda.split(".")[0] == "13" else "make install-tensorrt: error: torch " + torch.__version__ + " in $(VENV) is built for CUDA " + (cuda or "no CUDA") + ", not CUDA 13; nothing was installed")'
	@$(PY) -m pip freeze --exclude-editable > $(VENV)/tensorrt-held.txt
	@echo "installing $(TENSORRT_SPEC) from $(TENSORRT_INDEX) into $(VENV) (installed packages held at their versions)"
	@$(PY) -m pip install --quiet --extra-index-url $(TENSORRT_INDEX) -c $(VENV)/tensorrt-held.txt '$(TENSORRT_SPEC)' > $(VENV)/tensorrt-install.log 2>&1 || { echo "make install-tensorrt: error: pip could not install $(TENSORRT_SPEC) from $(TENSORRT_INDEX): $$(grep -m1 -oE 'Failed to establish a new connection[^)]*|^ERROR: .*' $(VENV)/tensorrt-install.log || echo 'see the log'); full log: $(VENV)/tensorrt-install.log; nothing else was changed" >&2; exit 1; }
	@$(PY) -c 'import tensorrt; print("TensorRT", tensorrt.__version__, "installed in $(VENV)")'
else
install-tensorrt:
	@echo "make install-tensorrt: error: no nvidia-smi on PATH: TensorRT needs an NVIDIA GPU and driver; nothing was installed" >&2; exit 2
endif

# TensorFlow in its own environment: tensorflow[and-cuda] on NVIDIA machines (CUDA 12),
# tensorflow-cpu elsewhere. No torch there, so no CUDA 13 wheels beside TensorFlow's.
install-tf: $(STAMP_TF)

$(STAMP_TF): pyproject.toml Makefile
	test -x $(PY_TF) || $(PYTHON) -m venv $(VENV_TF)
	$(PY_TF) -m pip install --quiet $(TF_PIP_ARGS)
	touch $@

# No install, no .venv: the preinstalled python3 of a GPU machine, PYTHONPATH=src.
# Exit 0 all checks passed, 1 a check failed, 2 no NVIDIA GPU here. Output: $OUT or ./gpu-check-out.
gpu-check:
	PYTHONPATH=src $(GPU_CHECK_PYTHON) benchmarks/gpu_check.py

# gcc builds the NVML test double (tests/native/); g++ is what torch.compile's inductor
# compiles its CPU kernels with (--exec compile on torch-cpu). Install them where missing.
native:
	@command -v gcc >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq gcc)
	@command -v g++ >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq g++)

# Headless Chromium renders the HTML report in its test.
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium)

# Slurm from the system packages (the Slurm executor's tests start a one-node cluster):
# installed where sbatch is missing; a machine where apt cannot install them skips those tests.
slurm-install:
	@command -v sbatch >/dev/null 2>&1 && command -v slurmdbd >/dev/null 2>&1 && command -v mariadbd >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm slurmdbd munge mariadb-server) || \
		echo "make slurm-install: warning: could not install Slurm; its tests will skip" >&2

slurm-up: slurm-install
	tools/slurm/up.sh

slurm-down:
	tools/slurm/down.sh

demo: install
	$(VENV)/bin/gpubench run --workload mnist --backend auto

# The reference (docs/, mkdocs.yml) built strict: a broken link or anchor, or a page left
# out of the nav, fails the build (tests/test_docs.py builds it too).
test: install native browser slurm-install
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet --site-dir build/site
	$(PY) -m pytest --durations=10

# The reference as a site on http://127.0.0.1:8000, rebuilt on every edit.
docs: install
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve

bench: install
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/sampler_overhead.py
	$(PY) benchmarks/isolation_overhead.py
	$(PY) benchmarks/ort_vs_torch.py
	$(PY) benchmarks/tf_vs_keras_fit.py
	$(PY) benchmarks/exec_modes.py
	$(PY) benchmarks/server_queueing.py
	$(PY) benchmarks/generate_decode.py

clean:
	rm -rf $(VENV) $(VENV_TF) build src/*.egg-info
