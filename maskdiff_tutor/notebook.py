"""Small helpers for the book's notebooks.

``glue`` hands a number computed on the page to the prose (``{glue:text}`name```), through
myst-nb when it is installed (the book build, the test suite) and as a plain display where it is
not (a bare Colab runtime), so a chapter runs in both places.
"""

from __future__ import annotations


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


def in_colab() -> bool:
    """True when running inside Google Colab."""
    import sys

    return "google.colab" in sys.modules
