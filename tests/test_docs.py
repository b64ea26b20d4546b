"""The reference (docs/, built with MkDocs) and the README, its front page: the generated
tables are the code's (options, workloads, backends), `mkdocs build --strict` fails on a
broken link or a page left out of the nav, and the README stays a short front page whose
links all land on a page."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import REPO

DOCS = REPO / "docs"
# A relative markdown link: [text](target), target without a scheme.
LINK = re.compile(r"\[[^\]]*\]\((?!https?:|mailto:)([^)\s]+)\)")


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def config_copy(tmp_path: Path, docs_dir: Path, drop_page: str | None = None) -> Path:
    """mkdocs.yml with docs_dir absolute (and one page taken out of the nav)."""
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    config["docs_dir"] = str(docs_dir)

    def keep(entries):
        out = []
        for entry in entries:
            (title, value), = entry.items()
            if isinstance(value, list):
                out.append({title: keep(value)})
            elif value != drop_page:
                out.append(entry)
        return out

    config["nav"] = keep(config["nav"])
    path = tmp_path / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def nav_pages(entries=None) -> list:
    entries = yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"] if entries is None else entries
    pages = []
    for entry in entries:
        (_, value), = entry.items()
        pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def slugs(page: Path) -> set:
    """The anchors of a page's headings, as MkDocs (Python-Markdown's toc) makes them."""
    from markdown.extensions.toc import slugify
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slugify(h, "-") for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def test_the_reference_builds_strict(tmp_path):
    result = build(REPO / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "workloads" / "index.html").exists()


def test_a_page_left_out_of_the_nav_fails_the_build(tmp_path):
    result = build(config_copy(tmp_path, DOCS, drop_page="history.md"), tmp_path / "site")
    assert result.returncode != 0
    assert 'not included in the "nav"' in result.stderr
    assert "  - history.md" in result.stderr.splitlines()


def test_a_broken_link_or_anchor_fails_the_build(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    with open(docs / "index.md", "a") as f:
        f.write("\n[gone](no-such-page.md) and [off](usage.md#no-such-anchor)\n")
    result = build(config_copy(tmp_path, docs), tmp_path / "site")
    assert result.returncode != 0
    assert [line for line in result.stderr.splitlines() if "no-such-page.md" in line]
    assert [line for line in result.stderr.splitlines() if "no-such-anchor" in line]


def test_every_generated_table_is_the_codes():
    from gpubench.cli.docs_gen import stale

    assert stale(DOCS) == [], "run `python -m gpubench.cli.docs_gen`"


def test_a_stale_table_is_found_and_rewritten(tmp_path):
    from gpubench.cli.docs_gen import main, stale

    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    page = docs / "workloads.md"
    page.write_text("\n".join(line for line in page.read_text().splitlines()
                              if not line.startswith("| `allreduce`")) + "\n")
    assert stale(docs) == ["workloads"]
    assert main([str(docs)]) == 0
    assert stale(docs) == []
    assert page.read_text() == (DOCS / "workloads.md").read_text()


def test_the_workloads_table_has_every_workload_and_who_runs_it():
    """Issue 28 (18): the hand-kept table missed allreduce and allgather and said gpt and
    bert ran on torch, ONNX Runtime and TensorRT only (tf-cpu runs them)."""
    from gpubench.cli.docs_gen import section
    from gpubench.workloads import WORKLOADS

    table = section((DOCS / "workloads.md").read_text(), "workloads")
    rows = {line.split("|")[1].strip(" `"): line.split("|")[-2].strip()
            for line in table.splitlines()[2:]}
    assert set(rows) == set(WORKLOADS.builtin) >= {"allreduce", "allgather"}
    assert rows["allreduce"] == rows["allgather"] == "torch-cpu, torch-cuda"
    for name in ("gpt", "bert"):
        assert {"tf-cpu", "tf-gpu", "torch-cuda", "onnxruntime-cpu", "tensorrt"} <= set(
            rows[name].split(", "))


def test_the_run_options_table_has_every_flag_run_parses():
    """Issue 28 (18): the run options table missed flags; every flag `gpubench run`
    parses is in it."""
    from gpubench.cli import build_parser
    from gpubench.cli.docs_gen import section

    run = build_parser()._subparsers._group_actions[0].choices["run"]
    flags = {s for a in run._actions for s in a.option_strings} - {"-h", "--help"}
    table = section((DOCS / "usage.md").read_text(), "gpubench run options")
    listed = set(re.findall(r"`(-[-\w]+)`", table))
    assert len(flags) > 40 and flags <= listed, sorted(flags - listed)


def test_the_contention_reference_names_its_step():
    """Issue 28 (18): telemetry said "How it measures, step 6" for the contention step,
    which is step 7."""
    steps = re.findall(r"^(\d+)\. (.+)$", (DOCS / "how-it-measures.md").read_text(), flags=re.M)
    contention = next(n for n, text in steps if "checked for contention" in text)
    refs = re.findall(r"\[How it measures\]\(how-it-measures\.md\), step (\d+)",
                      (DOCS / "telemetry.md").read_text())
    assert refs == [contention]


def test_the_readme_is_a_short_front_page_whose_links_land():
    """Issue 28 (18): at most ~300 lines, and every link into docs/ names a page (and a
    heading of it) that exists; every page of the nav is linked from it."""
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    linked = set()
    for target in LINK.findall(readme):
        path, _, anchor = target.partition("#")
        page = REPO / (path or "README.md")
        assert page.exists(), target
        if anchor:
            assert anchor in slugs(page), target
        if path.startswith("docs/"):
            linked.add(path[len("docs/"):])
    assert set(nav_pages()) - {"index.md"} <= linked, sorted(set(nav_pages()) - linked)

