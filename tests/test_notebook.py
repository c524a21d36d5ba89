"""The notebooks' helpers: ``Table`` shows rows as HTML and as aligned text, refuses ragged rows."""

from __future__ import annotations

import pytest

from maskdiff_tutor.notebook import Table


def test_a_table_formats_its_columns_and_escapes_html():
    table = Table(["set", "floor", "at n"], [["a < b", 0.03912, 3], ["simple", 0.5, 12]], {"floor": ".3f"})
    assert table.cells() == [["a < b", "0.039", "3"], ["simple", "0.500", "12"]]
    html = table._repr_html_()
    assert html.startswith("<table><thead><tr><th>set</th><th>floor</th><th>at n</th></tr></thead>")
    assert "<td>a &lt; b</td><td>0.039</td><td>3</td>" in html and html.count("<tr>") == 3
    assert repr(table).splitlines() == ["set     floor  at n", "a < b   0.039     3", "simple  0.500    12"]


def test_ragged_rows_and_unknown_formats_are_refused():
    with pytest.raises(ValueError, match=r"row 1 has 1 values for 2 columns"):
        Table(["a", "b"], [[1, 2], [3]])
    with pytest.raises(ValueError, match=r"formats name columns that do not exist: \['c'\]"):
        Table(["a", "b"], [[1, 2]], {"c": ".2f"})
