"""Every suite shipped in configs/ plans: its keys, workloads, params and backends are
ones this gpubench knows (a typo there would only show on the GPU runner, at night)."""

from pathlib import Path

import pytest

from gpubench.suite.executor import plan_suite

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_shipped_suite_plans(config, tmp_path):
    plan = plan_suite(config, tmp_path)
    assert plan.runs and all(p.key for p in plan.runs)


def test_scaling_suite_crosses_world_sizes():
    plan = plan_suite(CONFIGS[0].parent / "scaling.yaml", Path("unused"))
    sizes = {p.run.nproc for p in plan.runs if p.run.workload == "resnet50"}
    assert sizes == {1, 2, 4, 8}
