"""`gpubench report`: one self-contained HTML file; strings from result files are
escaped; it renders in headless Chromium with no console errors and a screenshot that
is not blank (skipped, with the reason, where Chromium or Pillow is missing)."""

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


def test_report_is_self_contained_and_escapes_result_text(tmp_path):
    html = _report(tmp_path, make_suite(tmp_path / "suite"), "--by", "driver_version")
    assert "<script" not in html.lower()  # the workload and the error text are escaped
    assert "&lt;script&gt;console.error(&#x27;xss&#x27;)&lt;/script&gt;" in html
    assert "RuntimeError: &lt;script&gt;" in html  # the failed run's error tail, as text
    # Nothing is loaded from anywhere: no src/href, and the only URL is the SVG namespace.
    assert not re.search(r"\b(src|href)\s*=", html, re.I)
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) == {"http://www.w3.org/2000/svg"}
    assert "Content-Security-Policy" in html
    # Throughput and energy bar charts, power and clock traces.
    assert html.count("<svg") == 4
    for text in ("Throughput (median, 95% CI)", "Energy per sample (median, 95% CI)",
                 "Power during the runs", "SM clock during the runs"):
        assert text in html
    # The comparison of 550.2 against 535.1: mnist 20% slower (past the floor of two
    # separate runs, 2.8 x the device class's prior), the failed run listed.
    section = html[html.index("<h2>Comparison"):html.index("<h2>Telemetry")]
    assert '<span class="slower">slower</span>' in section
    assert "550.2 against 535.1" in section and "new only" in section


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

    dom = _chromium(tmp_path, report, "--dump-dom")
    assert dom.returncode == 0 and _console_lines(dom.stderr) == []
    assert "<script" not in dom.stdout.lower()  # the injected workload stayed text
    assert "&lt;script&gt;console.error" in dom.stdout


def _svg_after(html: str, heading: str):
    """The first inline SVG after `heading`, parsed."""
    import xml.etree.ElementTree as ET
    start = html.index(heading)
    return ET.fromstring(html[html.index("<svg", start):html.index("</svg>", start) + 6])


def _visible_text(element) -> str:
    """A <text>'s own words and its <tspan>s', without <title> tooltips."""
    parts = [element.text or ""]
    for child in element:
        if not child.tag.endswith("title"):
            parts.append(child.text or "")
        parts.append(child.tail or "")
    return " ".join(p.strip() for p in parts if p.strip())


def test_bars_share_one_scale_and_labels_are_whole(tmp_path):
    """Issue 12: every configuration had its own scale (all bars full length) and its
    label was cut at 42 characters."""
    long_params = ";".join(f"parameter_{i}=value_{i}" for i in range(8))  # no spaces
    long_device = "NVIDIA H100 80GB HBM3 in a machine with a rather long product name"
    values = {("before", "mnist"): 1000.0, ("before", "linreg"): 250.0,
              ("after", "mnist"): 800.0, ("after", "linreg"): 200.0}
    for group in ("before", "after"):
        write_run(tmp_path / group, pd.concat([
            make_trials([values[(group, "mnist")]] * 4, run_id=f"{group}1"),
            make_trials([values[(group, "linreg")]] * 4, run_id=f"{group}2", workload="linreg",
                        params=long_params, device_name=long_device)]))
    html = _report(tmp_path, tmp_path / "before", tmp_path / "after")
    svg = _svg_after(html, "<h2>Throughput per configuration")
    ns = "{http://www.w3.org/2000/svg}"

    widths = {}
    for rect in svg.iter(f"{ns}rect"):
        title = rect.find(f"{ns}title")
        if title is not None:  # the bars carry their tooltip; legend swatches do not
            config, group = title.text.split(": median")[0].rsplit(" · ", 1)
            widths[(group, config.split(" ")[0])] = float(rect.get("width"))
    assert set(widths) == set(values)
    per_unit = [widths[k] / values[k] for k in values]
    assert max(per_unit) / min(per_unit) < 1.01, widths  # one scale: width ∝ value

    label = (f"linreg [{long_params}] torch-cuda train fp32 batch 64 ({long_device})")
    assert len(label) > 150  # longer than a line: wrapped
    texts = [_visible_text(t) for t in svg.iter(f"{ns}text")]
    whole = [t for t in texts if t.replace(" ", "") == label.replace(" ", "")]
    assert whole, texts  # every character of the label is shown, in one <text>
    assert "…" not in "".join(texts)
