"""A table fitted to a width, shared by every table of results (run and show, compare,
history): numbers and verdicts are never cut, headers and text wrap at their spaces,
identity columns holding one value for every row move into the title, then columns are
left out in the table's drop order (low priority first; a column the table keeps is
never left out) and named under the table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Collection, List, Optional, Sequence, Tuple

from gpubench.cli.table_cells import Col

UNLIMITED_WIDTH = 100_000  # piped without COLUMNS: as wide as the table needs


def _words_width(text: str) -> int:
    from rich.cells import cell_len
    return max((cell_len(w) for w in text.split()), default=0)


def _lines_width(text: str) -> int:
    from rich.cells import cell_len
    return max((cell_len(line) for line in text.splitlines()), default=0)


def table_width(widths: Sequence[int]) -> int:
    return sum(w + 2 for w in widths) + len(widths) + 1  # padding 1+1, borders


def fit_columns(cols: List[Col], cells: List[List[str]], width: int,
                drop_order: Sequence[str], kept: Collection[str] = ()
                ) -> Tuple[List[int], List[int], List[int], List[int]]:
    """Which columns to show at `width` and how wide: (shown, moved to the title, left
    out) as column indices, and the widths of the shown. A number's cell is never
    narrower than the number; headers and text wrap at spaces, never inside a word. A column
    empty in every row is not shown at all; one whose key is in `kept` is never left
    out."""
    n = len(cols)
    low = [max([_words_width(cols[i].header)] + [
        (_lines_width if cols[i].numeric else _words_width)(row[i])
        for row in cells]) for i in range(n)]
    high = [max([_lines_width(cols[i].header)] + [_lines_width(row[i]) for row in cells])
            for i in range(n)]
    shown = [i for i in range(n) if any(row[i] for row in cells)]
    titled: List[int] = []
    dropped: List[int] = []
    if table_width([low[i] for i in shown]) > width and cells:
        titled = [i for i in shown if cols[i].title and len({row[i] for row in cells}) == 1]
        shown = [i for i in shown if i not in titled]
    while table_width([low[i] for i in shown]) > width:
        droppable = [i for i in shown if cols[i].key is not None and cols[i].key not in kept]
        if not droppable:
            break
        worst = min(droppable, key=lambda i: drop_order.index(cols[i].key))
        shown.remove(worst)
        dropped.append(worst)
    widths = {i: high[i] for i in shown}
    while table_width(list(widths.values())) > width:
        wide = [i for i in shown if widths[i] > low[i]]
        if not wide:
            break
        widths[max(wide, key=lambda i: widths[i] - low[i])] -= 1
    return shown, titled, dropped, [widths[i] for i in shown]


@dataclass
class Fitted:
    """A rich table fitted to a width, and what did not fit in it."""
    table: Any
    dropped: List[str] = field(default_factory=list)  # headers of the columns left out

    def note(self, width: Optional[int]) -> Optional[str]:
        if not self.dropped:
            return None
        return (f"not shown at {width} columns: {', '.join(self.dropped)} "
                "(a wider terminal shows them; --format json has everything)")


def fitted_table(cols: List[Col], cells: List[List[str]], width: Optional[int],
                 title: Optional[str], drop_order: Sequence[str], kept: Collection[str] = (),
                 style: Optional[Callable[[Col, str], str]] = None) -> Fitted:
    """The rich table of `cells` (a row of strings per row, one per col) fitted to
    `width` (None: no limit). Cells are plain text, never markup; `style(col, cell)`
    gives a cell's rich style."""
    from rich.table import Table
    from rich.text import Text

    limit = width or UNLIMITED_WIDTH
    shown, titled, dropped, widths = fit_columns(cols, cells, limit, drop_order, kept)
    if titled:
        moved = ", ".join(cols[i].title(cells[0][i]) for i in titled)
        title = f"{title}: {moved}" if title else moved
    fits = table_width(widths) <= limit
    table = Table(title=Text(title) if title else None, title_justify="left")
    for i, w in zip(shown, widths):
        # Too narrow even so: text columns fold (rich narrows them), numbers keep their width.
        table.add_column(Text(cols[i].header, overflow="fold"),
                         width=w if fits or cols[i].numeric else None,
                         justify="right" if cols[i].numeric else "left")
    for row in cells:
        table.add_row(*(Text(row[i], overflow="fold", style=style(cols[i], row[i]) if style else "")
                        for i in shown))
    return Fitted(table, [cols[i].header for i in dropped])
