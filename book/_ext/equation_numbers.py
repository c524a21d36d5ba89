"""Equation numbers a reader of the paper can trust (a Sphinx extension for this book).

Sphinx numbers labelled equations 1, 2, 3, ... in the order it meets them, so the paper's Eq. 13
would render as whatever its position in the book happens to be. This extension sets the numbers
from the labels instead:

- a label ``eq-N`` (N = 1..18, the paper's equations) renders as ``(N)``, and every ``{eq}``
  reference to it as "Eq. N";
- every other label (the book's own equations: ``eq-oracle``, ``eq-zipf``, ...) renders as
  ``(B1)``, ``(B2)``, ... in reading order over the whole book, so that no book equation can be
  mistaken for one of the paper's.

A label ``eq-N`` with N outside 1..18 is an error: the paper has no such equation.
"""

from __future__ import annotations

import re

from docutils import nodes
from sphinx.domains.math import MathDomain
from sphinx.util import logging

PAPER_LABEL = re.compile(r"eq-(\d+)")
PAPER_EQUATIONS = range(1, 19)  # the paper numbers its displayed equations 1..18
BOOK_PREFIX = "B"

logger = logging.getLogger(__name__)


def paper_number(label: str) -> int | None:
    """The paper's equation number held by ``label`` (``eq-13`` -> 13), or None for a book label."""
    match = PAPER_LABEL.fullmatch(label)
    return int(match.group(1)) if match else None


class PaperNumberedMath(MathDomain):
    """The math domain, with numbers set from labels instead of from the order of appearance."""

    initial_data = {**MathDomain.initial_data, "book_serial": {}}  # label -> (docname, serial in doc)

    def note_equation(self, docname, labelid, location=None) -> None:
        super().note_equation(docname, labelid, location)
        number = paper_number(labelid)
        if number is None:
            serial = self.equations[labelid][1]
            self.data["book_serial"][labelid] = (docname, serial)
            self.equations[labelid] = (docname, f"{BOOK_PREFIX}?")  # set in number_book_equations
        elif number not in PAPER_EQUATIONS:
            logger.warning(f"equation label {labelid!r}: the paper has no Eq. {number} "
                           f"(its equations are 1-{PAPER_EQUATIONS[-1]}); use a descriptive label",
                           location=location)
        else:
            self.equations[labelid] = (docname, str(number))

    def clear_doc(self, docname: str) -> None:
        super().clear_doc(docname)
        for label, (doc, _serial) in list(self.data["book_serial"].items()):
            if doc == docname:
                del self.data["book_serial"][label]


def _reading_order(env) -> list[str]:
    """Documents in the order of the table of contents, depth first from the root."""
    order: list[str] = []

    def visit(doc: str) -> None:
        if doc in order:
            return
        order.append(doc)
        for child in env.toctree_includes.get(doc, ()):
            visit(child)

    visit(env.config.root_doc)
    order += sorted(set(env.found_docs) - set(order))
    return order


def number_book_equations(app, env) -> None:
    """Number the book's own equations B1, B2, ... in reading order, once every page is read."""
    domain = env.get_domain("math")
    position = {doc: i for i, doc in enumerate(_reading_order(env))}
    serial = domain.data["book_serial"]
    ordered = sorted(serial, key=lambda label: (position.get(serial[label][0], len(position)), serial[label][1]))
    for i, label in enumerate(ordered, start=1):
        domain.equations[label] = (serial[label][0], f"{BOOK_PREFIX}{i}")


def set_rendered_numbers(app, doctree, docname) -> None:
    """Give each labelled displayed equation its final number before the page is written."""
    domain = app.env.get_domain("math")
    for node in doctree.findall(nodes.math_block):
        if node.get("label"):
            node["number"] = domain.get_equation_number_for(node["label"])


def setup(app):
    app.add_domain(PaperNumberedMath, override=True)
    app.connect("env-updated", number_book_equations)
    app.connect("doctree-resolved", set_rendered_numbers)
    # The number shown is node["number"], not a figure number counted by numfig.
    app.config.math_numfig = False
    return {"version": "1.0", "parallel_read_safe": False, "parallel_write_safe": True, "env_version": 1}
