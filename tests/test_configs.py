"""Every suite shipped in configs/ plans: its keys, workloads, params and backends are
ones this gpubench knows (a typo there would only show on the GPU runner, at night)."""

from pathlib import Path

import pytest

import yaml

from gpubench.errors import UserError
from gpubench.suite.plan import plan_suite

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_shipped_suite_plans(config, tmp_path):
    named = yaml.safe_load(config.read_text()).get("environments") or {}
    missing = [n for n, path in named.items() if not (config.parent.parent / path).exists()]
    if missing:  # an environment this clone lacks (make install-tf builds .venv-tf)
        with pytest.raises(UserError, match=rf"{config}: environments\.{missing[0]}: "):
            plan_suite(config, tmp_path, install=False)
        return
    plan = plan_suite(config, tmp_path, install=False)
    assert plan.runs and all(p.key for p in plan.runs)


def test_scaling_suite_crosses_world_sizes():
    plan = plan_suite(CONFIGS[0].parent / "scaling.yaml", Path("unused"))
    sizes = {p.run.nproc for p in plan.runs if p.run.workload == "resnet50"}
    assert sizes == {1, 2, 4, 8}
