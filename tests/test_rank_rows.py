"""A run of ranks writes a row per rank and trial; statistics count each trial once
(results/rank_rows.py), in summary.csv and in compare."""

import numpy as np
import pytest
import pandas as pd

from gpubench.results.compare import compare
from gpubench.results.rank_rows import one_row_per_trial
from gpubench.results.summary import summarize
from test_compare import make_trials


def ranked(values, *, world_size=2, run_id="r1", **columns):
    """Rows of a run of `world_size` ranks on one device (the CPU): every rank's row of
    a trial holds the trial's figure, as the lockstep protocol writes them."""
    frames = []
    for rank in range(world_size):
        frame = make_trials(values, run_id=run_id, world_size=world_size, strategy="ddp",
                            rank=rank, process=0, schema_version=5, **columns)
        frame["global_throughput_samples_per_s"] = frame["throughput_samples_per_s"] * world_size
        frames.append(frame)
    return pd.concat(frames, ignore_index=True).sort_values(["trial", "rank"], kind="stable")


def test_one_row_per_trial_keeps_the_lowest_rank_of_each_trial():
    rows = ranked([100.0, 110.0, 120.0], world_size=3)
    rows = rows.iloc[::-1]  # rank order in the file must not matter
    kept = one_row_per_trial(rows)
    assert sorted(kept["trial"]) == [0, 1, 2]
    assert set(kept["rank"]) == {0}
    plain = make_trials([1.0, 2.0], rank=0)
    assert one_row_per_trial(plain) is plain


def test_summary_counts_a_ranked_trial_once():
    values = [100.0, 110.0, 120.0, 130.0, 125.0, 105.0]
    summary = summarize(ranked(values))
    assert len(summary) == 1
    row = summary.iloc[0]
    assert row["n_trials"] == 6 and row["n_ok"] == 6
    assert row["throughput_samples_per_s_median"] == 115.0
    assert row["global_throughput_samples_per_s_median"] == 230.0
    # the interval is that of six trials, not of twelve pooled rows
    six = summarize(make_trials(values)).iloc[0]
    assert np.isfinite(six["throughput_samples_per_s_ci_low"])
    assert np.isclose(row["throughput_samples_per_s_ci_low"], six["throughput_samples_per_s_ci_low"])


def test_compare_counts_a_ranked_trial_once_and_compares_global_throughput():
    base = ranked([100.0, 101.0, 99.0, 100.0, 100.5], run_id="a")
    new = ranked([80.0, 81.0, 79.0, 80.0, 80.5], run_id="b")
    table = compare(base, new)
    assert table["n_base"].tolist() == [5] and table["n_new"].tolist() == [5]
    table = compare(base, new, metric="global_throughput_samples_per_s")
    assert table.iloc[0]["verdict"] == "slower"
    assert np.isclose(table.iloc[0]["ratio"], 0.8, atol=0.01)


def _scaling_side(tmp_path, name, efficiency_2):
    """A side with runs at world size 1 (1000 samples/s) and 2 (2000 x efficiency)."""
    one = ranked([1000.0, 1010.0, 990.0, 1000.0, 1005.0, 995.0], world_size=1, run_id=f"{name}1")
    two = ranked([1000.0 * efficiency_2] * 6, world_size=2, run_id=f"{name}2")
    folder = tmp_path / name
    folder.mkdir()
    pd.concat([one, two]).to_csv(folder / "trials.csv", index=False)
    return folder


def test_compare_and_report_show_weak_scaling_of_both_sides(tmp_path):
    from gpubench.results.compare import compare_paths
    from gpubench.results.compare_format import to_json, to_markdown
    from gpubench.results.report import build_report

    base, new = _scaling_side(tmp_path, "base", 0.9), _scaling_side(tmp_path, "new", 0.6)
    comparison = compare_paths(base, new, metric="global_throughput_samples_per_s")
    scaling = comparison.scaling
    assert scaling["world_size"].tolist() == [2]
    assert scaling["efficiency_base"].tolist() == pytest.approx([0.9])
    assert scaling["efficiency_new"].tolist() == pytest.approx([0.6])
    assert scaling["change_points"].tolist() == pytest.approx([-30.0])
    assert "| 90.0% | 60.0% | -30.0 points |" in to_markdown(comparison)
    assert '"change_points": -30' in to_json(comparison, "regression", 1)
    html = build_report([base, new])
    assert "<h2>Weak scaling</h2>" in html and '"text":"Weak scaling efficiency"' in html
    assert "90.0%" in html and "60.0%" in html
    plain = tmp_path / "plain"
    plain.mkdir()
    make_trials([100.0] * 6).to_csv(plain / "trials.csv", index=False)
    assert "Weak scaling" not in build_report([plain])  # plain runs: no section
