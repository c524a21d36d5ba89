"""Small helpers for the book's notebooks.

``glue`` hands a number computed on the page to the prose (``{glue:text}`name```), through
myst-nb when it is installed (the book build, the test suite) and as a plain display where it is
not (a bare Colab runtime), so a chapter runs in both places. ``Table`` shows results as tables:
from lists of values, or from typed records read by attribute (``Table.of``).
"""

from __future__ import annotations

import dataclasses
import numbers


def glue(name: str, value, display: bool = False) -> None:
    """Record ``value`` under ``name`` for the book's prose; show it only if ``display``."""
    try:
        from myst_nb import glue as _glue
    except ImportError:  # outside the book's environment: nothing to record into
        if display:
            from IPython.display import display as _display

            _display(value)
        return
    _glue(name, value, display=display)


def two_figures(value: float) -> float | int:
    """``value`` rounded to two significant figures, as an int from 10 on (17, not 17.0): how the
    book prints a mean over a few hundred sampled sequences, good to a few per cent."""
    rounded = float(f"{value:.2g}")
    return int(rounded) if rounded >= 10 else rounded


def in_colab() -> bool:
    """True when running inside Google Colab."""
    import sys

    return "google.colab" in sys.modules


class Table:
    """Rows of results shown as an HTML table in a notebook or a built page, and as aligned text
    elsewhere (``print`` or ``repr``). Columns of numbers align right.

    Args:
        columns: the header of each column.
        rows: one list of values per row, as many as there are columns.
        formats: a format spec per column name (e.g. ``{"floor": ".3f"}``); other values are shown
            with ``str``; None is shown as an empty cell.
        caption: a line above the table saying what it shows (settings, units), or None.
        markdown: the cells are Markdown (MyST) text, e.g. with links to chapters: the table is
            shown as a Markdown table, on a page and as text alike (the verdict tables).
    """

    def __init__(self, columns: list[str], rows: list[list], formats: dict | None = None,
                 caption: str | None = None, markdown: bool = False):
        self.columns, self.formats, self.caption = list(columns), dict(formats or {}), caption
        self.markdown = markdown
        unknown = sorted(set(self.formats) - set(self.columns))
        if unknown:
            raise ValueError(f"formats name columns that do not exist: {unknown}; columns are {self.columns}")
        self.rows = [list(row) for row in rows]
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(f"row {i} has {len(row)} values for {len(self.columns)} columns")

    @classmethod
    def of(cls, records, columns: dict | None = None, formats: dict | None = None,
           caption: str | None = None) -> Table:
        """A table with one row per typed record (a dataclass instance), read by attribute.

        ``columns`` maps each header to the attribute it shows (a field or property name) or to a
        function of the record; without it every field is a column, headed by its name."""
        records = list(records)
        if columns is None:
            if not records:
                raise ValueError("columns must be given for a table of no records")
            columns = {f.name: f.name for f in dataclasses.fields(records[0])}
        rows = [[getter(record) if callable(getter) else _attribute(record, getter, header)
                 for header, getter in columns.items()] for record in records]
        return cls(list(columns), rows, formats, caption)

    def cells(self) -> list[list[str]]:
        """Every value as the text the table shows, row by row."""
        return [["" if v is None else format(v, self.formats[c]) if c in self.formats else str(v)
                 for c, v in zip(self.columns, row)] for row in self.rows]

    def _numeric(self, column: int) -> bool:
        """True when every value of ``column`` is a number (or None): its cells align right."""
        values = [row[column] for row in self.rows if row[column] is not None]
        return bool(values) and all(isinstance(v, numbers.Number) and not isinstance(v, bool) for v in values)

    def _markdown(self) -> str:
        """The table as a Markdown table ("|" inside a cell escaped), its caption above it."""
        def line(values):
            return "| " + " | ".join(" ".join(v.split()).replace("|", "\\|") for v in values) + " |"

        lines = [self.caption, ""] if self.caption else []
        lines += [line(self.columns), "|" + "---|" * len(self.columns), *(line(row) for row in self.cells())]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str | None:
        return self._markdown() if self.markdown else None

    def __eq__(self, other) -> bool:
        return isinstance(other, Table) and (self.columns, self.cells(), self.caption, self.markdown) == (
            other.columns, other.cells(), other.caption, other.markdown)

    def _repr_html_(self) -> str | None:
        if self.markdown:
            return None
        import html

        align = ["right" if self._numeric(i) else "left" for i in range(len(self.columns))]
        head = "".join(f'<th style="text-align: {a}">{html.escape(c)}</th>' for c, a in zip(self.columns, align))
        body = "".join("<tr>" + "".join(f'<td style="text-align: {a}">{html.escape(v)}</td>'
                                        for v, a in zip(row, align)) + "</tr>" for row in self.cells())
        caption = f'<p class="result-table-caption">{html.escape(self.caption)}</p>' if self.caption else ""
        return (f'<div class="result-table">{caption}<table><thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table></div>")

    def __repr__(self) -> str:
        if self.markdown:
            return self._markdown()
        cells, numeric = self.cells(), [self._numeric(i) for i in range(len(self.columns))]
        widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(self.columns)]
        lines = [self.caption] if self.caption else []
        lines += ["  ".join(c.ljust(w) for c, w in zip(self.columns, widths))]
        lines += ["  ".join(v.rjust(w) if right else v.ljust(w) for v, w, right in zip(row, widths, numeric))
                  for row in cells]
        return "\n".join(lines)


def _attribute(record, name: str, header: str):
    """``record.name``; a name the record lacks raises naming the column and the record's fields."""
    try:
        return getattr(record, name)
    except AttributeError:
        fields = [f.name for f in dataclasses.fields(record)] if dataclasses.is_dataclass(record) else []
        raise ValueError(f"column {header!r}: {type(record).__name__} has no attribute {name!r} "
                         f"(its fields: {fields})") from None
