"""The notebooks' helpers: ``Table`` shows rows as HTML and as aligned text, refuses ragged rows."""

from __future__ import annotations

import pytest

from maskdiff_tutor.notebook import Table


def test_a_table_formats_its_columns_and_escapes_html():
    table = Table(["set", "floor", "at n"], [["a < b", 0.03912, 3], ["simple", 0.5, 12]], {"floor": ".3f"})
    assert table.cells() == [["a < b", "0.039", "3"], ["simple", "0.500", "12"]]
    html = table._repr_html_()
    left, right = 'style="text-align: left"', 'style="text-align: right"'
    assert html.startswith(f'<div class="result-table"><table><thead><tr><th {left}>set</th><th {right}>floor</th>')
    assert f"<td {left}>a &lt; b</td><td {right}>0.039</td><td {right}>3</td>" in html and html.count("<tr>") == 3
    assert repr(table).splitlines() == ["set     floor  at n", "a < b   0.039     3", "simple  0.500    12"]


def test_a_caption_heads_the_table_and_none_is_an_empty_cell():
    table = Table(["k", "PPL"], [[1, 4.25], [2, None]], {"PPL": ".1f"}, caption="true PPL, s = 2")
    assert table.cells() == [["1", "4.2"], ["2", ""]]
    html = table._repr_html_()
    assert html.startswith('<div class="result-table"><p class="result-table-caption">true PPL, s = 2</p>')
    assert '<td style="text-align: right"></td>' in html  # None in a column of numbers
    assert repr(table).splitlines() == ["true PPL, s = 2", "k  PPL", "1  4.2", "2     "]


def test_ragged_rows_and_unknown_formats_are_refused():
    with pytest.raises(ValueError, match=r"row 1 has 1 values for 2 columns"):
        Table(["a", "b"], [[1, 2], [3]])
    with pytest.raises(ValueError, match=r"formats name columns that do not exist: \['c'\]"):
        Table(["a", "b"], [[1, 2]], {"c": ".2f"})


def test_a_markdown_table_is_the_same_markdown_on_a_page_and_as_text():
    from maskdiff_tutor.notebook import Table

    table = Table(["claim", "verdict"], [["3 (3.2.2)", "holds:  exactly | always"], ["4", None]], markdown=True)
    text = "| claim | verdict |\n|---|---|\n| 3 (3.2.2) | holds: exactly \\| always |\n| 4 |  |"
    assert table._repr_markdown_() == text and repr(table) == text and table._repr_html_() is None
    plain = Table(["claim"], [["3"]])
    assert plain._repr_markdown_() is None and plain._repr_html_().startswith('<div class="result-table">')
    assert table == Table(["claim", "verdict"], [["3 (3.2.2)", "holds:  exactly | always"], ["4", None]],
                          markdown=True)


def test_two_figures_rounds_to_two_significant_figures():
    from maskdiff_tutor.notebook import two_figures

    assert [two_figures(v) for v in (4.4321, 0.01267, 16.6, 98.64, 123.4)] == [4.4, 0.013, 17, 99, 120]
    assert isinstance(two_figures(16.6), int) and isinstance(two_figures(4.43), float)
