"""`gpubench dashboard`: a static site of a fleet's runs over time. Built from a folder
of run folders (two machines, two configurations, 24 nights; one regression at a driver
change), it holds a page per series, the regression first, plotly.js once beside the
pages; its per-run statistics and change points are history's; it refuses a folder it
did not write; and it renders in headless Chromium with no console error."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli_here
from test_compare import make_trials, one_error_line, write_run
from test_report import CHROMIUM, EVIL, _chromium, _console_lines


NIGHTS = 24
STEP_AT = 14  # box-a's mnist is 15% slower from this night on, when its driver changed


def make_fleet(folder: Path, evil: bool = False) -> Path:
    """Run folders as nightly CI leaves them: hosts box-a and box-b, mnist on
    torch-cuda and lenet5 on tf-gpu, one run a night each, 6 trials a run."""
    seed = 0
    for night in range(NIGHTS):
        day = pd.Timestamp("2026-03-01T02:00:00Z") + pd.Timedelta(days=night)
        stamp = day.strftime("%Y%m%dT%H%M%SZ")
        for host in ("box-a", "box-b"):
            for workload, backend, mean in (("mnist", "torch-cuda", 300_000.0),
                                            ("lenet5", "tf-gpu", 10_000.0)):
                seed += 1
                late = night >= STEP_AT
                if host == "box-a" and workload == "mnist" and late:
                    mean *= 0.85
                run_id = f"{host[-1]}{workload[0]}{night:02d}"
                trials = make_trials((6, mean), seed=seed, run_id=run_id, host=host,
                                     workload=EVIL if evil and workload == "lenet5" else workload,
                                     backend=backend, started_utc=day.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                     driver_version="550.2" if (host == "box-a" and late) else "535.1",
                                     schema_version=7)
                write_run(folder / f"{stamp}-{host}-{run_id}", trials)
    return folder


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    return make_fleet(tmp_path_factory.mktemp("fleet") / "results")


@pytest.fixture(scope="module")
def site(fleet, tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "dash"
    proc = run_cli_here("dashboard", str(fleet), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out / "index.html")
    return out


def _figures(html: str) -> dict:
    blob = re.search(r'<script type="application/json" id="gpubench-figures">(.*?)</script>',
                     html, re.S).group(1)
    return json.loads(blob)


def test_site_layout_order_and_filters(site):
    pages = sorted(p.name for p in (site / "configs").iterdir())
    assert len(pages) == 4  # (mnist, lenet5) x (box-a, box-b)
    assert sorted(p.name for p in (site / "assets").iterdir()) == [
        "dashboard.css", "dashboard.js", "plotly.min.js"]
    index = (site / "index.html").read_text()
    # plotly.js once, beside the pages, referenced relatively; nothing from the network
    assert index.count('<script src="assets/plotly.min.js"></script>') == 1
    assert not re.search(r"https?://", index)
    cards = re.findall(r'<div class="card" data-machine="([^"]+)" data-workload="([^"]+)" '
                       r'data-backend="([^"]+)" data-status="([^"]+)"', index)
    assert cards[0] == ("box-a", "mnist", "torch-cuda", "regression")  # the regression first
    assert [c[3] for c in cards[1:]] == ["ok"] * 3
    assert re.search(r"regression -1\d\.\d% since 2026-03-15", index)
    for name, values in (("machine", ("box-a", "box-b")), ("workload", ("lenet5", "mnist")),
                         ("backend", ("tf-gpu", "torch-cuda"))):
        select = re.search(rf'<select data-filter="{name}">(.*?)</select>', index).group(1)
        assert re.findall(r'<option value="([^"]*)"', select) == ["", *values]
    figures = _figures(index)
    assert len(figures) == 4
    import plotly.graph_objects as go
    for page in [index, *((site / "configs" / p).read_text() for p in pages)]:
        for fig in _figures(page).values():
            go.Figure(fig)  # plotly's own schema: an unknown or misspelt property raises
    first = figures[re.search(r'<div class="chart" id="([^"]+)"', index).group(1)]
    medians = first["data"][0]
    assert len(medians["x"]) == NIGHTS and all(isinstance(v, int) for v in medians["x"])
    assert first["layout"]["xaxis"]["type"] == "date"
    change = [s for s in first["layout"]["shapes"] if s["line"]["color"] == "#c62828"]
    assert len(change) == 1  # the change point, at the night the step came
    env = [t for t in first["data"] if t["name"] == "environment change"]
    assert env and env[0]["text"] == ["driver 535.1 → 550.2"]
    assert change[0]["x0"] == env[0]["x"][0] == medians["x"][STEP_AT]


def test_the_run_filters_select_the_site(fleet, tmp_path):
    """--machine and --since (the filters history, compare and report take) select the
    runs the site is built from: box-b's two series only, from the step's night on, so no
    change is left to find."""
    out = tmp_path / "dash"
    day = (pd.Timestamp("2026-03-01") + pd.Timedelta(days=STEP_AT)).strftime("%Y-%m-%d")
    proc = run_cli_here("dashboard", str(fleet), "-o", str(out), "--machine", "box-b",
                        "--since", day)
    assert proc.returncode == 0, proc.stderr
    index = (out / "index.html").read_text()
    machines = re.findall(r'<div class="card" data-machine="([^"]+)"', index)
    assert machines == ["box-b", "box-b"]
    assert 'data-status="regression"' not in index


def test_series_page(site):
    index = (site / "index.html").read_text()
    page = re.search(r'<a href="configs/([^"]+)">', index).group(1)
    html = (site / "configs" / page).read_text()
    assert '<a href="../index.html">' in html and 'src="../assets/plotly.min.js"' in html
    assert "machine <b>box-a</b>" in html
    section = html[html.index("<h2>Change points"):html.index("<h2>Environment changes")]
    assert '<span class="slower">' in section and "2026-03-15" in section
    assert "driver 535.1 → 550.2" in html
    spread, = [f for f in _figures(html).values() if f["data"][0]["type"] == "box"]
    assert len(spread["data"][0]["y"]) == NIGHTS * 6  # every ok trial of every run
    assert len(set(spread["data"][0]["x"])) == NIGHTS  # a box per run
    runs = html[html.index("<h2>Runs, newest first"):]
    assert runs.count("<tr>") == NIGHTS + 1  # a row a run, and the header


def test_per_run_statistics_and_changes_are_historys(fleet):
    from gpubench.results.compare_load import read_input
    from gpubench.results.dashboard import changes, series
    from gpubench.results.history import history
    from gpubench.stats import describe

    trials = read_input(fleet)
    tables = series.tables(trials)
    for run in tables.runs.itertuples():
        d = describe(trials.loc[trials["run_id"] == run.run_id, "throughput_samples_per_s"])
        assert (run.value, run.ci_low, run.ci_high, run.trials) == pytest.approx(
            (d["median"], d["ci_low"], d["ci_high"], d["n"]))
    found = changes.analyse_all(tables, "throughput_samples_per_s", 0.05, 5)
    ours = {(tables.series.loc[sid, "host"], tables.series.loc[sid, "workload"]):
            [c.run_id for c in h.changes] for sid, h in found.items()}
    for host in ("box-a", "box-b"):
        theirs = history(trials[trials["host"] == host])
        for c in theirs.configs:
            assert ours[(host, c.config["workload"])] == [ch.run_id for ch in c.changes]
    assert ours[("box-a", "mnist")] == [f"am{STEP_AT:02d}"]


def test_result_text_is_escaped(tmp_path):
    fleet = make_fleet(tmp_path / "results", evil=True)
    out = tmp_path / "dash"
    assert run_cli_here("dashboard", str(fleet), "-o", str(out)).returncode == 0
    for page in [out / "index.html", *(out / "configs").iterdir()]:
        html = page.read_text()
        assert "<script>console" not in html and "<script>" not in html
        assert len(re.findall(r"<script", html)) == 3  # the figures' JSON and two files
        blob = re.search(r'id="gpubench-figures">(.*?)</script>', html, re.S).group(1)
        assert "<" not in blob  # a label cannot end the JSON's element
    assert "&lt;script&gt;console.error" in (out / "index.html").read_text()


def test_refuses_a_folder_it_did_not_write_and_replaces_its_own(fleet, tmp_path):
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    one_error_line(run_cli_here("dashboard", str(fleet), "-o", str(precious)),
                   str(precious), "not a gpubench dashboard")
    assert [p.name for p in precious.iterdir()] == ["notes.txt"]
    out = tmp_path / "dash"
    for _ in range(2):  # the second build replaces the first whole
        assert run_cli_here("dashboard", str(fleet), "-o", str(out)).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dash", "mine"]  # no temp folder left
    one_error_line(run_cli_here("dashboard", str(tmp_path / "nope"), "-o", str(out)),
                   "no such file")
    assert (out / "index.html").is_file()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                    "(apt-get install chromium; `make test` installs it)")
def test_dashboard_renders_in_headless_chromium(site, tmp_path):
    index = site / "index.html"
    page = site / "configs" / re.search(r'<a href="configs/([^"]+)">',
                                        index.read_text()).group(1)
    for html, charts in ((index, 4), (page, 2)):
        dom = _chromium(tmp_path, html, "--virtual-time-budget=10000", "--window-size=1400,3000",
                        "--dump-dom")
        assert dom.returncode == 0 and _console_lines(dom.stderr) == [], dom.stderr[-3000:]
        drawn = re.findall(r'<div class="chart[^"]*js-plotly-plot"', dom.stdout)
        assert len(drawn) == charts, dom.stdout[:2000]
        assert dom.stdout.count('class="main-svg"') >= charts
        assert len(re.findall(r'class="(?:trace|points|box)', dom.stdout)) >= charts
    # the filters work: only box-b's two series are shown once it is picked
    probe = site / "probe.html"
    probe.write_text(index.read_text().replace(
        '<script src="assets/dashboard.js"></script>',
        '<script src="assets/dashboard.js"></script><script src="assets/probe.js"></script>'))
    (site / "assets" / "probe.js").write_text(
        "var s = document.querySelector('select[data-filter=machine]'); s.value = 'box-b';"
        "s.dispatchEvent(new Event('change'));")
    try:
        dom = _chromium(tmp_path, probe, "--virtual-time-budget=10000", "--dump-dom")
    finally:
        probe.unlink()
        (site / "assets" / "probe.js").unlink()
    assert _console_lines(dom.stderr) == []
    assert "2 of 4 series shown" in dom.stdout
    shown = re.findall(r'<div class="card" data-machine="([^"]+)"[^>]*?(style="display: none;")?>',
                       dom.stdout)
    assert sorted(m for m, hidden in shown if not hidden) == ["box-b", "box-b"]


def test_a_store_read_in_part_gives_the_folders_tables(fleet, tmp_path):
    """The dashboard reads a store's needed columns only, their text as categoricals (a
    fleet's year would take gigabytes as one string a cell): the same series, runs and
    values as from the folders."""
    from gpubench.results.compare_load import read_input
    from gpubench.results.dashboard import series

    store = tmp_path / "store"
    proc = run_cli_here("store", "add", str(store), str(fleet))
    assert proc.returncode == 0, proc.stderr
    part = read_input(store, columns=series.needed_columns())
    assert any(isinstance(part[c].dtype, pd.CategoricalDtype) for c in ("workload", "host"))
    assert "latency_p99_ms" not in part.columns  # not needed, not read
    ours, theirs = series.tables(part), series.tables(read_input(fleet))
    assert ours.series.drop(columns="series").to_dict("records") == \
        theirs.series.drop(columns="series").to_dict("records")
    key = ["run_id", "value", "ci_low", "ci_high", "trials", "driver_version", "host"]
    pd.testing.assert_frame_equal(ours.runs.sort_values("run_id")[key].reset_index(drop=True),
                                  theirs.runs.sort_values("run_id")[key].reset_index(drop=True))
    assert sorted(ours.values["value"]) == pytest.approx(sorted(theirs.values["value"]))
