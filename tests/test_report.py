"""`gpubench report`: one self-contained HTML file whose charts plotly.js (embedded
once) draws; strings from result files are escaped; one panel per workload and mode;
it renders in headless Chromium with no console errors, its charts drawn, and a
screenshot that is not blank (skipped, with the reason, where Chromium or Pillow is
missing)."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import FAST_RUN, run_cli_here  # the commands in this process: their output is under test
from test_compare import make_trials, one_error_line, write_run

EVIL = "<script>console.error('xss')</script>"
CHROMIUM = shutil.which("chromium")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-logging=stderr", "--v=0")


def _samples(run_id: str, seconds: float, watts: float, mhz: float) -> pd.DataFrame:
    t = np.arange(0, seconds, 0.1)
    return pd.DataFrame({"run_id": run_id, "t_s": t, "device_index": 0, "trial": (t // 1).astype(int),
                         "sample_kind": "poll", "power_w": watts + 5 * np.sin(t),
                         "sm_clock_mhz": mhz - 20 * (t > seconds / 2)})


def make_suite(folder: Path) -> Path:
    """A suite folder as `gpubench suite` writes it: runs of two drivers merged at the
    top (with samples.csv carrying run_id), one failed run whose error holds HTML."""
    trials = pd.concat([
        make_trials((6, 1000.0), seed=1, run_id="a1", driver_version="535.1", energy_j=70.0, power_avg_w=250),
        make_trials((6, 400.0), seed=2, run_id="a2", driver_version="535.1", workload=EVIL),
        make_trials((6, 800.0), seed=3, run_id="b1", driver_version="550.2", energy_j=75.0, power_avg_w=240,
                    sm_clock_mhz=1700, throttled=True),
        make_trials((6, 410.0), seed=4, run_id="b2", driver_version="550.2", workload=EVIL),
        make_trials([1.0], run_id="b3", driver_version="550.2", workload="resnet50", status="failed",
                    throughput_samples_per_s=np.nan, error=f"Traceback\nRuntimeError: {EVIL}"),
    ])
    write_run(folder, trials)
    samples = pd.concat([_samples("a1", 6, 250, 1980), _samples("b1", 6, 240, 1750)])
    samples.to_csv(folder / "samples.csv", index=False)
    return folder


def _report(tmp_path, *args) -> str:
    out = tmp_path / "report.html"
    proc = run_cli_here("report", *map(str, args), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    return out.read_text()


def _scripts(html: str):
    """The page's <script> elements: (attributes, body)."""
    return re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)


def figures(html: str) -> dict:
    """The report's figures (plotly figure JSON) by the id of the div each is drawn in."""
    blob, = [body for attrs, body in _scripts(html) if 'id="gpubench-figures"' in attrs]
    return json.loads(blob)


def test_report_is_self_contained_and_escapes_result_text(tmp_path):
    from gpubench.results.report_plot import script_hash

    html = _report(tmp_path, make_suite(tmp_path / "suite"), "--by", "driver_version")
    # Three scripts: plotly.js, the figures (JSON, not run) and the render script; the
    # CSP runs exactly the two by their hashes and loads nothing from anywhere.
    scripts = _scripts(html)
    assert [attrs for attrs, _ in scripts] == ["", ' type="application/json" id="gpubench-figures"', ""]
    assert "plotly.js v" in scripts[0][1][:200]
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert "default-src 'none'" in csp
    assert f"script-src {script_hash(scripts[0][1])} {script_hash(scripts[2][1])}" in csp
    assert "<" not in scripts[1][1]  # no label can end the JSON's element
    page = html.replace(scripts[0][1], "")  # plotly.js's own text holds URLs
    assert not re.search(r"\b(src|href)\s*=", page, re.I) and not re.search(r"https?://", page)
    # The workload and the error text are escaped, in the tables and in the figures.
    assert "<script>console" not in html
    assert "&lt;script&gt;console.error(&#x27;xss&#x27;)&lt;/script&gt;" in html
    assert "RuntimeError: &lt;script&gt;" in html  # the failed run's error tail, as text
    figs = figures(html)
    import plotly.graph_objects as go
    for fig in figs.values():
        go.Figure(fig)  # plotly's own schema: an unknown or misspelt property raises
    titles = [f["layout"]["title"]["text"] for f in figs.values()]
    assert any(t.startswith("&lt;script&gt;console.error('xss')&lt;/script&gt;") for t in titles)
    # Throughput and energy: a panel per workload (mnist, the evil one); power and
    # clock: small multiples, a panel per run with samples (a1, b1).
    assert sum(t.startswith("mnist [hidden=128] · train") for t in titles) == 2
    assert sum("Power during the runs" == t or "SM clock during the runs" == t for t in titles) == 2
    power, = [f for f in figs.values() if f["layout"]["title"]["text"] == "Power during the runs"]
    assert len(power["data"]) == 2 and {d["xaxis"] for d in power["data"]} == {"x", "x2"}
    assert power["layout"]["yaxis"]["range"] == power["layout"]["yaxis2"]["range"]  # one scale
    # The comparison of 550.2 against 535.1: mnist 20% slower (past the floor of two
    # separate runs, 2.8 x the device class's prior), the failed run listed.
    section = html[html.index("<h2>Comparison"):html.index("<h2>Telemetry")]
    assert "550.2 against 535.1" in section and "new only" in section
    assert '<span class="slower">slower</span>' in section


def test_one_input_is_named_once(tmp_path):
    """The issue: the suite's id repeated on every row. One group: no group column;
    the input, and what every row shares, in the header once."""
    suite = make_suite(tmp_path / "suite")
    html = _report(tmp_path, suite)
    summary = html[html.index("<h2>Summary"):html.index("<h2>Throughput")]
    assert '<th class="t">group</th>' not in summary and "suite</td>" not in summary
    header = html[:html.index("<h2>Summary")]
    assert f"<li>{suite}</li>" in header and "device <b>Test GPU</b>" in header
    assert html.count(str(suite)) == 1
    bars = [f for f in figures(html).values() if f["data"] and f["data"][0]["type"] == "bar"]
    assert bars and all(f["layout"]["showlegend"] is False for f in bars)  # no legend of one group


def test_report_of_plain_inputs_groups_by_input(tmp_path):
    a = write_run(tmp_path / "before", make_trials((5, 1000.0), seed=1))
    b = write_run(tmp_path / "after", make_trials((5, 1000.0), seed=2, run_id="r2"))
    html = _report(tmp_path, a, b)
    assert "after against before" in html
    assert "No telemetry time series" in html and "not measured" not in html.split("Energy per sample")[0]


def test_report_bad_inputs(tmp_path):
    suite = make_suite(tmp_path / "suite")
    one_error_line(run_cli_here("report", str(tmp_path / "nope"), "-o", str(tmp_path / "r.html")),
                   "nope", "no such file")
    one_error_line(run_cli_here("report", str(suite), "--by", "colour", "-o", str(tmp_path / "r.html")),
                   "--by colour")
    samples = pd.read_csv(suite / "samples.csv").rename(columns={"power_w": "power_mw"})
    samples.to_csv(suite / "samples.csv", index=False)
    one_error_line(run_cli_here("report", str(suite), "-o", str(tmp_path / "r.html")),
                   "samples.csv", "power_mw", "mixes units")
    assert not (tmp_path / "r.html").exists()


def _chromium(tmp_path: Path, page: Path, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra,
                           page.resolve().as_uri()], capture_output=True, text=True, timeout=120)


def _console_lines(stderr: str):
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                    "(apt-get install chromium; `make test` installs it)")
def test_report_renders_in_headless_chromium(tmp_path):
    image_module = pytest.importorskip("PIL.Image", reason="Pillow (the dev extra) is not installed")
    real = run_cli_here("run", "-w", "linreg", "-b", "torch-cpu", *FAST_RUN, "--telemetry", "cpu",
                        "--out", str(tmp_path / "real"), "-q")
    assert real.returncode == 0, real.stderr
    report = tmp_path / "report.html"
    report.write_text(_report(tmp_path, make_suite(tmp_path / "suite"), real.stdout.strip()))

    # The check itself can fail: a page whose inline script the CSP blocks logs an error.
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", "<script>1</script></body>"))
    assert _console_lines(_chromium(tmp_path, probe, "--dump-dom").stderr)

    shot = tmp_path / "shot.png"
    proc = _chromium(tmp_path, report, f"--screenshot={shot}", "--window-size=1280,2400")
    assert shot.exists(), proc.stderr[-2000:]
    assert _console_lines(proc.stderr) == []
    with image_module.open(shot) as img:
        rgb = img.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20) or []
        pixels = np.asarray(rgb).reshape(-1, 3)
    non_white = float(np.mean(pixels.min(axis=1) < 240))
    print(f"\nscreenshot {rgb.size}: {len(colours)} colours, {non_white:.1%} non-white pixels")
    assert len(colours) > 50 and non_white > 0.02

    dom = _chromium(tmp_path, report, "--virtual-time-budget=10000", "--dump-dom")
    assert dom.returncode == 0 and _console_lines(dom.stderr) == []
    assert "<script>console" not in dom.stdout  # the injected workload stayed text
    assert "&lt;script&gt;console.error" in dom.stdout
    # every figure drawn by plotly.js, with its traces
    charts = len(figures(report.read_text()))
    assert len(re.findall(r'<div class="chart js-plotly-plot"', dom.stdout)) == charts >= 6
    assert dom.stdout.count('class="main-svg"') >= charts
    assert len(re.findall(r'class="(?:trace|points)', dom.stdout)) >= charts


def test_panels_keep_workloads_apart_and_labels_whole(tmp_path):
    """The issue: one bar chart put MNIST at 300k samples/s beside LeNet-5 at 10k on
    one axis. Each workload and mode is a panel of its own, its axis from 0, the
    backends side by side and the groups as bars of their own; a long label is whole."""
    long_params = ";".join(f"parameter_{i}=value_{i}" for i in range(8))
    values = {("before", "mnist", "torch-cuda"): 300_000.0, ("before", "mnist", "tf-gpu"): 280_000.0,
              ("before", "lenet5", "torch-cuda"): 10_000.0,
              ("after", "mnist", "torch-cuda"): 240_000.0, ("after", "mnist", "tf-gpu"): 280_000.0,
              ("after", "lenet5", "torch-cuda"): 9_000.0}
    for group in ("before", "after"):
        write_run(tmp_path / group, pd.concat([
            make_trials([v] * 4, run_id=f"{group}-{w}-{b}", workload=w, backend=b,
                        params=long_params if w == "lenet5" else "hidden=128")
            for (g, w, b), v in values.items() if g == group]))
    html = _report(tmp_path, tmp_path / "before", tmp_path / "after")
    start = html.index("<h2>Throughput per configuration")
    ids = re.findall(r'<div class="chart" id="([^"]+)"', html[start:html.index("<h2>Energy", start)])
    figs = figures(html)
    panels = {figs[i]["layout"]["title"]["text"]: figs[i] for i in ids}
    assert sorted(panels) == [f"lenet5 [{long_params}] · train · fp32 batch 64",
                              "mnist [hidden=128] · train · fp32 batch 64"]
    mnist = panels["mnist [hidden=128] · train · fp32 batch 64"]
    assert [t["name"] for t in mnist["data"]] == ["before", "after"]
    assert {tuple(t["x"]) for t in mnist["data"]} == {("torch-cuda", "tf-gpu")}  # side by side
    assert mnist["data"][1]["y"] == [240_000.0, 280_000.0]
    assert mnist["layout"]["yaxis"]["rangemode"] == "tozero"
    lenet = panels[f"lenet5 [{long_params}] · train · fp32 batch 64"]
    assert [t["y"] for t in lenet["data"]] == [[10_000.0], [9_000.0]]  # not beside 300k


def test_inference_latency_percentiles(tmp_path):
    rows = make_trials([1000.0] * 4, mode="infer", latency_p50_ms=1.0, latency_p90_ms=1.5,
                       latency_p99_ms=2.5)
    html = _report(tmp_path, write_run(tmp_path / "infer", rows))
    start = html.index("<h2>Inference latency")
    fig_id = re.search(r'<div class="chart" id="([^"]+)"', html[start:]).group(1)
    fig = figures(html)[fig_id]
    assert [(t["name"], t["y"]) for t in fig["data"]] == [("p50", [1.0]), ("p90", [1.5]),
                                                         ("p99", [2.5])]
    train = _report(tmp_path, write_run(tmp_path / "train", make_trials([1000.0] * 4)))
    assert "Inference latency" not in train
