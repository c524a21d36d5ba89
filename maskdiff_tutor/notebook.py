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
