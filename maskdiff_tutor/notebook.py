"""Small helpers for the book's notebooks.

``glue`` hands a number computed on the page to the prose (``{glue:text}`name```), through
myst-nb when it is installed (the book build, the test suite) and as a plain display where it is
not (a bare Colab runtime), so a chapter runs in both places. ``glued`` returns what was glued,
for the chapter's verdict rows (:func:`maskdiff_tutor.claims.report`).
"""

from __future__ import annotations

_GLUED: dict = {}  # every value glued in this kernel, by name


def glue(name: str, value, display: bool = False) -> None:
    """Record ``value`` under ``name`` for the book's prose; show it only if ``display``."""
    _GLUED[name] = value
    try:
        from myst_nb import glue as _glue
    except ImportError:  # outside the book's environment: nothing to record into
        if display:
            from IPython.display import display as _display

            _display(value)
        return
    _glue(name, value, display=display)


def glued() -> dict:
    """Every value glued so far in this kernel, by name (a chapter hands them to its verdict rows)."""
    return dict(_GLUED)


def in_colab() -> bool:
    """True when running inside Google Colab."""
    import sys

    return "google.colab" in sys.modules


class Table:
    """Rows of results shown as an HTML table in a notebook or a built page, and as aligned text
    elsewhere (``print`` or ``repr``).

    Args:
        columns: the header of each column.
        rows: one list of values per row, as many as there are columns.
        formats: a format spec per column name (e.g. ``{"floor": ".3f"}``); other values are shown
            with ``str``.
    """

    def __init__(self, columns: list[str], rows: list[list], formats: dict | None = None):
        self.columns, self.formats = list(columns), dict(formats or {})
        unknown = sorted(set(self.formats) - set(self.columns))
        if unknown:
            raise ValueError(f"formats name columns that do not exist: {unknown}; columns are {self.columns}")
        self.rows = [list(row) for row in rows]
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(f"row {i} has {len(row)} values for {len(self.columns)} columns")

    def cells(self) -> list[list[str]]:
        """Every value as the text the table shows, row by row."""
        return [[format(v, self.formats[c]) if c in self.formats else str(v) for c, v in zip(self.columns, row)]
                for row in self.rows]

    def _repr_html_(self) -> str:
        import html

        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in self.cells())
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __repr__(self) -> str:
        cells = self.cells()
        widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(self.columns)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(self.columns, widths))]
        lines += ["  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths))) for row in cells]
        return "\n".join(lines)
