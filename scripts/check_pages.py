"""Read the built book as a reader does, in a headless browser at a given width, and report per page:

- code lines a reader sees (cells not folded), output lines (text) and results shown as tables (and
  their rows; a folded output counts neither);
- lines cut off at the right: a line of a code or output block wider than the block's visible width;
- raw TeX: text outside the rendered-math elements that looks like TeX (``\\frac``, ``$x$``, ``^{``),
  and raw equation labels (``[eq-...]``);
- figures: whether each has a caption, and whether its image holds at least twice the pixels it is
  shown at (sharp on a high-density screen).

Usage (after ``bash scripts/build-book.sh``)::

    python scripts/check_pages.py                        # a table; exit 1 if any line is cut off or raw TeX shows
    python scripts/check_pages.py --json report.json     # the same numbers as JSON
    python scripts/check_pages.py --fail-on cut          # exit 1 only on cut-off lines

It needs Playwright's Python package and a Chromium (``pip install playwright``; the system's
``chromium``, or ``playwright install chromium``). Layout is measured without the network: the page's
MathJax is not loaded, which changes no code or output block.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

MEASURE = r"""
() => {
  const main = document.querySelector("main") || document.body;
  const canvas = document.createElement("canvas").getContext("2d");
  function lines(pre) { return pre.innerText.replace(/\n$/, "").split("\n"); }
  function cut(pre) {
    if (pre.scrollWidth <= pre.clientWidth + 1) return [];  // nothing overflows (short lines, or wrapped)
    const style = getComputedStyle(pre);
    canvas.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
    const room = pre.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    return lines(pre).filter(line => canvas.measureText(line.replace(/\t/g, "    ")).width > room + 1);
  }
  function folded(el) { return !!el.closest("details:not([open])") || el.offsetParent === null; }
  const report = {code_lines: 0, output_lines: 0, table_rows: 0, tables: 0, cut_code: [], cut_output: [], raw_tex: [],
                  figures: []};
  for (const pre of main.querySelectorAll(".cell_input pre")) {
    if (folded(pre)) continue;
    report.code_lines += lines(pre).length;
    report.cut_code.push(...cut(pre));
  }
  for (const pre of main.querySelectorAll(".cell_output pre")) {
    if (folded(pre)) continue;
    report.output_lines += lines(pre).length;
    report.cut_output.push(...cut(pre));
  }
  for (const table of main.querySelectorAll(".cell_output table")) {
    const box = table.closest(".cell_output");
    if (!folded(table)) { report.tables += 1; report.table_rows += table.querySelectorAll("tbody tr").length; }
    if (table.scrollWidth > box.clientWidth + 1) report.cut_output.push("(a table wider than the column)");
  }
  const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
  const tex = /\\(frac|sum|prod|alpha|omega|mathbb|mathrm|left|right|begin)\b|\$[^$\s][^$]*\$|\^\{|_\{|\[eq-[\w-]+\]/;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || parent.closest(".math, mjx-container, pre, code, script, style, .cell_input")) continue;
    const match = node.textContent.match(tex);
    if (match) report.raw_tex.push(node.textContent.trim().slice(0, 80));
  }
  for (const img of main.querySelectorAll(".cell_output img")) {
    const figure = img.closest("figure");
    report.figures.push({caption: figure && figure.querySelector("figcaption")
                           ? figure.querySelector("figcaption").innerText.trim().slice(0, 120) : null,
                         natural_width: img.naturalWidth, shown_width: Math.round(img.getBoundingClientRect().width)});
  }
  return report;
}
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--html", default=str(ROOT / "_build" / "html"), help="the built book")
    p.add_argument("--width", type=int, default=1280, help="browser window width in CSS pixels")
    p.add_argument("--browser", default=None, help="a Chromium executable (default: chromium on PATH, else "
                                                     "Playwright's own)")
    p.add_argument("--json", default=None, help="write the report here")
    p.add_argument("--fail-on", choices=("all", "cut"), default="all",
                   help="exit 1 on cut-off lines and raw TeX (all) or on cut-off lines only (cut)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    html = pathlib.Path(args.html)
    pages = sorted((html / "book").glob("*.html"))
    if not pages:
        print(f"check_pages: no pages under {html / 'book'}; build the book first (bash scripts/build-book.sh)",
              file=sys.stderr)
        return 2
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("check_pages: needs Playwright: pip install playwright", file=sys.stderr)
        return 2
    browser_path = args.browser or shutil.which("chromium") or shutil.which("chromium-browser")
    report = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path)
        page = browser.new_page(viewport={"width": args.width, "height": 900})
        page.route("http*://**", lambda route: route.abort())  # offline: the page's CDN scripts are not fetched
        for path in pages:
            page.goto(path.as_uri(), wait_until="load")
            report[path.stem] = page.evaluate(MEASURE)
        browser.close()
    print(f"{'page':<20}{'code lines':>11}{'output lines':>13}{'tables':>7}{'rows':>6}{'cut code':>9}{'cut output':>11}"
          f"{'raw TeX':>8}{'figures':>8}{'captioned':>10}{'sharp':>6}")
    for name, r in report.items():
        figures = r["figures"]
        print(f"{name:<20}{r['code_lines']:>11}{r['output_lines']:>13}{r['tables']:>7}{r['table_rows']:>6}"
              f"{len(r['cut_code']):>9}{len(r['cut_output']):>11}"
              f"{len(r['raw_tex']):>8}{len(figures):>8}{sum(f['caption'] is not None for f in figures):>10}"
              f"{sum(f['natural_width'] >= 2 * f['shown_width'] > 0 for f in figures):>6}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"width": args.width, "pages": report}, indent=1) + "\n")
    bad = sum(len(r["cut_code"]) + len(r["cut_output"]) + (len(r["raw_tex"]) if args.fail_on == "all" else 0)
              for r in report.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
