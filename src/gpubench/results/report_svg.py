"""Inline SVG charts for the HTML report, drawn in Python (no JavaScript, no network).
Every text that reaches the SVG goes through `esc` (labels come from result files)."""

from __future__ import annotations

import html
import math
import re
from typing import Dict, List, Sequence, Tuple

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def nice_ticks(low: float, high: float, count: int = 5) -> List[float]:
    """About `count` round tick values covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        high = low + 1.0 if math.isfinite(low) else 1.0
        low = low if math.isfinite(low) else 0.0
    raw = (high - low) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    ticks = [math.floor(low / step) * step]
    while ticks[-1] < high - step * 1e-9 or len(ticks) < 2:  # the last tick covers high
        ticks.append(ticks[-1] + step)
    return [round(t, 12) for t in ticks]


def fmt_tick(v: float) -> str:
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:g}M"
    if a >= 1e4:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


Bar = Tuple[float, float, float]  # median, CI low, CI high (NaN where unknown)


def bar_chart(title: str, unit: str, configs: Sequence[str], groups: Sequence[str],
              values: Dict[Tuple[str, str], Bar], width: int = 960) -> str:
    """Horizontal grouped bars: one block per configuration (its full label on its own
    lines above the bars, wrapped, never cut), one bar per group, the 95% CI as an
    error bar and the median written beside it. Every bar shares one linear scale from
    0 (they share a unit): bar lengths compare across configurations, not only within
    one; a bar too small to see still has its value written beside it."""
    left, bar_h, gap, line_h, value_w = 8, 16, 12, 15, 110
    plot_w = width - left - value_w
    finite = [v for bar in values.values() for v in bar if math.isfinite(v)]
    ticks = nice_ticks(0.0, max(finite + [0.0]) or 1.0)
    scale = ticks[-1] or 1.0

    def x(v: float) -> float:
        return left + plot_w * min(max(v, 0.0), scale) / scale

    legend = [wrap(g, width - left - 20) for g in groups]
    blocks = [(c, wrap(c, width - 2 * left), [g for g in groups if (c, g) in values]) for c in configs]
    blocks = [b for b in blocks if b[2]]
    axis_y = 52 + line_h * sum(len(lines) for lines in legend) + 8
    height = axis_y + 10 + sum(len(lines) * line_h + len(present) * bar_h + gap
                               for _, lines, present in blocks)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" {FONT}>',
           f'<title>{esc(title)}</title>',
           f'<text x="4" y="16" font-size="14" font-weight="bold">{esc(title)}</text>',
           f'<text x="4" y="32" fill="#666">{esc(unit)}; one scale from 0 for every configuration; '
           f'whiskers: 95% CI of the median</text>']
    y = 52.0
    for i, lines in enumerate(legend):  # one group a line (or more, wrapped)
        out.append(f'<rect x="{left}" y="{y - 9:.0f}" width="10" height="10" fill="{color(i)}"/>'
                   + text_lines(left + 14, y, lines, line_h))
        y += line_h * len(lines)
    for t in ticks:  # axis: tick values above, grid lines through every block
        out.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{axis_y + 4}" y2="{height}" stroke="#eee"/>'
                   f'<text x="{x(t):.1f}" y="{axis_y}" text-anchor="middle" fill="#666">{esc(fmt_tick(t))}</text>')
    y = axis_y + 10 + line_h - 3
    for c, lines, present in blocks:
        out.append(text_lines(left, y, lines, line_h, 'class="config"'))
        y += line_h * (len(lines) - 1) + 5
        out.append(f'<line x1="{left}" x2="{left}" y1="{y}" y2="{y + len(present) * bar_h}" stroke="#999"/>')
        for g in present:
            med, lo, hi = values[(c, g)]
            i = list(groups).index(g)
            tip = f"{c} · {g}: median {med:,.4g}" + (f", 95% CI {lo:,.4g}–{hi:,.4g}" if math.isfinite(lo) else "")
            cy = y + bar_h / 2
            if math.isfinite(med):
                out.append(f'<rect x="{left}" y="{y + 2}" width="{x(med) - left:.2f}" '
                           f'height="{bar_h - 4}" fill="{color(i)}"><title>{esc(tip)}</title></rect>'
                           f'<text x="{max(x(med), x(hi) if math.isfinite(hi) else 0) + 6:.1f}" '
                           f'y="{cy + 4:.1f}">{esc(fmt_value(med))}</text>')
            if math.isfinite(lo) and math.isfinite(hi):
                out.append(f'<path d="M{x(lo):.1f},{cy:.1f}H{x(hi):.1f}M{x(lo):.1f},{cy - 4:.1f}V{cy + 4:.1f}'
                           f'M{x(hi):.1f},{cy - 4:.1f}V{cy + 4:.1f}" stroke="#222" stroke-width="1.5" fill="none"/>')
            y += bar_h
        y += gap + line_h - 5
    out.append("</svg>")
    return "\n".join(out)


CHAR_W = 7.0  # a generous average advance of the 12 px sans-serif font, for wrapping


def wrap(text: object, width_px: float) -> List[str]:
    """`text` in lines that fit `width_px`, broken at spaces or after a `;` or `,`
    (a params list has no spaces), a piece longer than a line at the limit; every
    character is kept: labels are wrapped, never cut."""
    limit = max(8, int(width_px // CHAR_W))
    lines: List[str] = []
    line = ""
    for i, word in enumerate(str(text).split(" ")):
        for j, piece in enumerate(re.split(r"(?<=[;,])", word)):
            glue = " " if i and not j else ""  # a space before the word's first piece
            if line and len(line) + len(glue) + len(piece) > limit:
                lines.append(line)
                line, glue = "", ""
            while len(line) + len(glue) + len(piece) > limit:
                room = limit - len(line) - len(glue)
                lines.append(line + glue + piece[:room])
                line, glue, piece = "", "", piece[room:]
            line += glue + piece
    lines.append(line)
    return lines


def text_lines(x: float, y: float, lines: Sequence[str], line_h: float, attrs: str = "") -> str:
    """A <text> of one <tspan> a line, the first on baseline `y`."""
    spans = "".join(f'<tspan x="{x:.1f}" dy="{0 if i == 0 else line_h}">{esc(line)}</tspan>'
                    for i, line in enumerate(lines))
    return f'<text x="{x:.1f}" y="{y:.1f}"{" " + attrs if attrs else ""}>{spans}</text>'


def fmt_value(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"


Series = Tuple[str, Sequence[float], Sequence[float]]  # label, x values, y values


def line_chart(title: str, x_label: str, y_label: str, series: Sequence[Series],
               width: int = 900, height: int = 300) -> str:
    """One polyline per series (x ascending), with axes, ticks and a legend."""
    left, right, top, bottom = 70, 20, 30, 70
    xs = [v for _, sx, _ in series for v in sx if math.isfinite(v)]
    ys = [v for _, _, sy in series for v in sy if math.isfinite(v)]
    x_ticks = nice_ticks(min(xs, default=0.0), max(xs, default=1.0))
    y_ticks = nice_ticks(min(min(ys, default=0.0), 0.0), max(ys, default=1.0))
    legends = [wrap(label, width - left - 14) for label, _, _ in series]  # long: wrapped, not cut
    legend_rows = sum(len(lines) for lines in legends)
    height += legend_rows * 14
    pw, ph = width - left - right, height - top - bottom - legend_rows * 14

    def px(v: float) -> float:
        return left + pw * (v - x_ticks[0]) / ((x_ticks[-1] - x_ticks[0]) or 1.0)

    def py(v: float) -> float:
        return top + ph - ph * (v - y_ticks[0]) / ((y_ticks[-1] - y_ticks[0]) or 1.0)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" {FONT}>',
           f'<title>{esc(title)}</title>',
           f'<text x="4" y="16" font-size="14" font-weight="bold">{esc(title)}</text>']
    for t in x_ticks:
        out.append(f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{top}" y2="{top + ph}" stroke="#eee"/>'
                   f'<text x="{px(t):.1f}" y="{top + ph + 14}" text-anchor="middle">{esc(fmt_tick(t))}</text>')
    for t in y_ticks:
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#eee"/>'
                   f'<text x="{left - 6}" y="{py(t) + 4:.1f}" text-anchor="end">{esc(fmt_tick(t))}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    out.append(f'<text x="{left + pw / 2:.0f}" y="{top + ph + 32}" text-anchor="middle">{esc(x_label)}</text>')
    out.append(f'<text transform="translate(14,{top + ph / 2:.0f}) rotate(-90)" text-anchor="middle">'
               f'{esc(y_label)}</text>')
    ly = top + ph + 50
    for i, (label, sx, sy) in enumerate(series):
        points = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(sx, sy)
                          if math.isfinite(a) and math.isfinite(b))
        if points:
            out.append(f'<polyline points="{points}" fill="none" stroke="{color(i)}" stroke-width="1.5">'
                       f'<title>{esc(label)}</title></polyline>')
        out.append(f'<rect x="{left}" y="{ly - 9}" width="10" height="10" fill="{color(i)}"/>'
                   + text_lines(left + 14, ly, legends[i], 14))
        ly += 14 * len(legends[i])
    out.append("</svg>")
    return "\n".join(out)


def downsample(xs: Sequence[float], ys: Sequence[float], limit: int = 400) -> Tuple[list, list]:
    """Every k-th point so a trace has at most `limit` (keeps the file small)."""
    step = max(1, math.ceil(len(xs) / limit))
    return list(xs[::step]), list(ys[::step])
