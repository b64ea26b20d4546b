"""The reference's options tables, made from the one declaration (measure/options.py):
the `gpubench run` table (docs/usage.md) and the table of suite keys (docs/suites.md).
`python -m gpubench.cli.docs_gen` writes them (with the other generated tables)."""

from __future__ import annotations

from typing import Any

from gpubench.measure.option import Option
from gpubench.measure.options import OPTIONS


def _text(help_text: str) -> str:
    return help_text.replace("%%", "%").replace("|", "\\|")


def _value(value: Any) -> str:
    if value is None or value is False:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return f"`{value}`"


def _default(o: Option, suite: bool = False) -> str:
    if o.required or (suite and o.suite_required):
        return "required"
    if suite and o.suite_default is not None:
        return _value(o.suite_default)
    return o.shown_default or _value(o.default)


def run_table() -> str:
    """Every `gpubench run` option: its flags, what it does, its default."""
    rows = ["| option | meaning | default |", "| --- | --- | --- |"]
    for o in OPTIONS:
        if o.cli:
            flags = ", ".join(f"`{flag}`" for flag in o.cli_flags)
            rows.append(f"| {flags} | {_text(o.help)} | {_default(o)} |")
    return "\n".join(rows)


def suite_table() -> str:
    """Every key of a suite entry (or of `defaults:`): a matrix key takes a list and is
    crossed, a setting one value; the `gpubench run` option it is."""
    rows = ["| key | takes | default | as `gpubench run` |", "| --- | --- | --- | --- |"]
    for o in OPTIONS:
        if o.key is None:
            continue
        takes = "a list, crossed" if o.suite == "matrix" else "a value"
        default = _default(o, suite=True)
        flag = f"`{o.cli_flags[0]}`" if o.cli_flags else "(suites only)"
        rows.append(f"| `{o.key}` | {takes} | {default} | {flag} |")
    rows.append("| `params` | a mapping of lists, each crossed | | `--param` |")
    return "\n".join(rows)
