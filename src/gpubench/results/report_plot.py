"""Charts for the HTML report and the dashboard: plotly figures (plotly.js draws them in
the browser), built here as plain dicts (the figure JSON plotly.js reads).

Safety. Every text from a result file that reaches a figure goes through `text`
(html.escape without quotes): plotly reads a small subset of HTML in labels, and an
escaped `<script>` is drawn as those characters. The figures travel as JSON inside a
`<script type="application/json">` (never executed), with `<` written `\\u003c`, so no
label can end that element. The pages' Content-Security-Policy allows only the scripts
they were written with (by hash, or the site's own files): an injected inline script
would not run.

plotly (the Python package) is needed only for plotly.js itself (`plotly_js`), which is
embedded in the page or written beside it: the charts open offline.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from gpubench.errors import UserError

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
FONT = {"family": "system-ui, sans-serif", "size": 12}
# The render script: every figure of the page's JSON into the div of its id.
RENDER_JS = """(function () {
  var figs = JSON.parse(document.getElementById('gpubench-figures').textContent);
  var config = {displaylogo: false, responsive: true, displayModeBar: false};
  Object.keys(figs).forEach(function (id) {
    Plotly.newPlot(id, figs[id].data, figs[id].layout, config);
  });
})();"""


def esc(value: object) -> str:
    """HTML text of a value (quotes too: safe in an attribute)."""
    return html.escape(str(value), quote=True)


def text(value: object) -> str:
    """A label for a figure: plotly reads a subset of HTML in labels, so `<` and `&`
    are escaped and drawn as themselves."""
    return html.escape(str(value), quote=False)


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def plotly_js() -> str:
    """plotly.js (minified), from the plotly package."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise UserError("the report and the dashboard draw their charts with plotly, which is "
                        "not installed here: pip install 'plotly>=5'") from None
    return get_plotlyjs()


def number(v: Any, digits: int = 6) -> Optional[float]:
    """A JSON number (`digits` significant digits), None for NaN, infinite or missing."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(f):
        return None
    return float(f"{f:.{digits}g}")


def numbers(values: Iterable[Any], digits: int = 6) -> List[Optional[float]]:
    return [number(v, digits) for v in values]


def to_json(obj: Any) -> str:
    """JSON for a `<script type="application/json">`: NaN refused (use `number`), and
    `<` escaped so nothing in it ends the element."""
    return json.dumps(obj, allow_nan=False, separators=(",", ":")).replace("<", "\\u003c")


def script_hash(source: str) -> str:
    """The CSP source that allows exactly this inline script."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def layout(title: str = "", height: int = 320, **extra: Any) -> Dict[str, Any]:
    """The common layout: a title (already `text`ed by the caller), compact margins."""
    out: Dict[str, Any] = {"font": FONT, "height": height, "margin": {"l": 64, "r": 16, "t": 48,
                                                                       "b": 48},
                           "paper_bgcolor": "white", "plot_bgcolor": "white",
                           "hovermode": "closest",
                           "legend": {"orientation": "h", "y": -0.25}}
    if title:
        out["title"] = {"text": title, "x": 0, "xanchor": "left", "font": {"size": 14}}
    out.update(extra)
    return out


def axis(title: str = "", **extra: Any) -> Dict[str, Any]:
    out = {"title": {"text": title}, "gridcolor": "#eee", "zerolinecolor": "#ccc",
           "automargin": True}
    out.update(extra)
    return out


Bar = Tuple[float, float, float]  # median, CI low, CI high (NaN where unknown)


def bar_figure(title: str, unit: str, labels: Sequence[str], groups: Sequence[str],
               values: Dict[Tuple[str, str], Bar], height: int = 300) -> Dict[str, Any]:
    """Grouped bars: one category per label (a backend, and what else varies in the
    panel), one bar per group, the 95% CI of the median as an error bar; the y axis
    from 0. `labels` and `groups` are raw text (escaped here)."""
    data = []
    for i, group in enumerate(groups):
        present = [label for label in labels if (label, group) in values]
        if not present:
            continue
        med = [values[(lab, group)][0] for lab in present]
        low = [values[(lab, group)][1] for lab in present]
        high = [values[(lab, group)][2] for lab in present]
        data.append({
            "type": "bar", "name": text(group), "x": [text(lab) for lab in present],
            "y": numbers(med), "marker": {"color": color(i)},
            "error_y": {"type": "data", "symmetric": False, "color": "#222", "thickness": 1.2,
                        "array": numbers(h - m if math.isfinite(h) else math.nan
                                         for m, h in zip(med, high)),
                        "arrayminus": numbers(m - lo if math.isfinite(lo) else math.nan
                                              for m, lo in zip(med, low))},
            "hovertemplate": "%{x}<br>" + text(group) + ": %{y:,.4~g} " + text(unit)
                             + "<extra></extra>"})
    return {"data": data, "layout": layout(
        text(title), height, barmode="group", showlegend=len(data) > 1,  # groups in it
        xaxis=axis(type="category", automargin=True),
        yaxis=axis(text(unit), rangemode="tozero"))}


Series = Tuple[str, Sequence[float], Sequence[float]]  # label, x values, y values


def line_figure(title: str, x_title: str, y_title: str, series: Sequence[Series],
                height: int = 340, dash_from: int = -1, **layout_extra: Any) -> Dict[str, Any]:
    """One line (with markers) per series; series from index `dash_from` on are drawn
    dashed and grey-free (reference lines: a bound, a segment median). Raw labels."""
    data = []
    for i, (label, xs, ys) in enumerate(series):
        dashed = 0 <= dash_from <= i
        data.append({"type": "scatter", "mode": "lines" if dashed else "lines+markers",
                     "name": text(label), "x": numbers(xs), "y": numbers(ys),
                     "line": {"color": color(i), "width": 1.5,
                              **({"dash": "dash"} if dashed else {})},
                     "marker": {"size": 5}})
    return {"data": data, "layout": layout(text(title), height, xaxis=axis(text(x_title)),
                                           yaxis=axis(text(y_title)), **layout_extra)}


class Charts:
    """The figures of one page: `add` returns the div a figure is drawn in; `scripts`
    the JSON and the render script that draw them all."""

    def __init__(self, prefix: str = "chart") -> None:
        self.prefix = prefix
        self.figures: Dict[str, Dict[str, Any]] = {}

    def add(self, figure: Dict[str, Any], css: str = "chart") -> str:
        div_id = f"{self.prefix}-{len(self.figures) + 1}"
        self.figures[div_id] = figure
        return f'<div class="{css}" id="{div_id}"></div>'

    def data_script(self) -> str:
        return (f'<script type="application/json" id="gpubench-figures">'
                f"{to_json(self.figures)}</script>")
