"""Read the built book as a reader does, in a headless browser at a given width, and report per page:

- code lines a reader sees (cells not folded), output lines (text) and results shown as tables (and
  their rows; a folded output counts neither), and the page's height;
- lines cut off at the right: a line of a code or output block wider than the block's visible width;
- raw TeX: text outside the rendered-math elements that looks like TeX (``\\frac``, ``$x$``, ``^{``),
  and raw equation labels (``[eq-...]``);
- figures: whether each has a caption, and whether its image holds at least twice the pixels it is
  shown at (sharp on a high-density screen);
- the maths, typeset by MathJax 4 from a local copy (the page asks for it from a CDN; the request is
  answered from ``--mathjax``): MathJax errors, display equations wider than the text column, those
  of them that cannot be scrolled inside their own box (cut), and how far the page itself scrolls
  sideways.

Each page is read at every width of ``--widths`` (default 1280 px, a laptop, and 390 px, a phone).
The check fails on any cut-off code or output line and any raw TeX at the widest width; at every
width on any MathJax error, any display equation wider than the text column (MathJax 4 breaks long
ones over lines, as ``_config.yml`` asks) and a page that scrolls sideways; and on the Verdict
chapter's lines per claim ending below the first screen (``SCREEN``) at the widest width.

Usage (after ``bash scripts/build-book.sh``)::

    python scripts/check_pages.py                        # a table per width; exit 1 on any failure above
    python scripts/check_pages.py --json report.json     # the same numbers as JSON
    python scripts/check_pages.py --fail-on cut          # exit 1 only on cut-off lines

It needs Playwright's Python package, a Chromium (``pip install playwright``; the system's
``chromium``, or ``playwright install chromium``) and MathJax 4 (``npm install --prefix .cache/mathjax
mathjax@4``, which ``scripts/check-pages.sh`` runs). Nothing is fetched from the network.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
# The npm packages `npm install --prefix .cache/mathjax mathjax@4` leaves: mathjax/ and its font, @mathjax/
MATHJAX = ROOT / ".cache" / "mathjax" / "node_modules"
MATHJAX_VERSION = "4"  # the major version _config.yml's mathjax_path loads (scripts/install-mathjax.sh installs it)

SCREEN = 1000  # px: the Verdict chapter's counts and one line per claim must end within this height at the widest

TYPESET = """
async () => {
  if (!document.querySelector('script[src*="mathjax"]')) return false;  // a page without maths loads none
  for (let waited = 0; !(window.MathJax && window.MathJax.startup && window.MathJax.startup.promise); waited += 50) {
    if (waited > 20000) throw new Error("MathJax did not start within 20 s");
    await new Promise(resolve => setTimeout(resolve, 50));
  }
  await window.MathJax.startup.promise;
  return true;
}
"""

MATHS = r"""
() => {
  const main = document.querySelector("main") || document.body;
  const root = document.documentElement;
  const report = {math_errors: [], wide_equations: [], cut_equations: [],
                  page_overflow: Math.max(0, root.scrollWidth - root.clientWidth), page_height: root.scrollHeight,
                  glance_bottom: null};
  const glance = main.querySelector("div.verdict-glance");  // the Verdict chapter's one line per claim
  if (glance) report.glance_bottom = Math.round(glance.getBoundingClientRect().bottom + window.scrollY);
  for (const error of main.querySelectorAll("mjx-merror")) {
    report.math_errors.push((error.getAttribute("data-mjx-error") || error.textContent).slice(0, 120));
  }
  for (const box of main.querySelectorAll('mjx-container[display="true"]')) {
    if (box.offsetParent === null || box.scrollWidth <= box.clientWidth + 1) continue;
    const math = box.querySelector("mjx-math");
    const what = {width: Math.round(math ? math.getBoundingClientRect().width : box.scrollWidth),
                  column: box.clientWidth,
                  tex: (box.querySelector("mjx-assistive-mml math") || box).getAttribute("alttext") || ""};
    what.tex = what.tex || (box.closest(".math") || box).id || box.textContent.slice(0, 60);
    report.wide_equations.push(what);
    const overflow = getComputedStyle(box).overflowX;
    if (overflow !== "auto" && overflow !== "scroll") report.cut_equations.push(what);
  }
  return report;
}
"""

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
    p.add_argument("--widths", type=int, nargs="+", default=[1280, 390],
                   help="browser window widths in CSS pixels (the first is the widest, read in full)")
    p.add_argument("--mathjax", default=str(MATHJAX),
                   help="the node_modules folder holding npm's mathjax@4 (mathjax/tex-mml-chtml.js) and its font")
    p.add_argument("--browser", default=None, help="a Chromium executable (default: chromium on PATH, else "
                                                     "Playwright's own)")
    p.add_argument("--json", default=None, help="write the report here")
    p.add_argument("--fail-on", choices=("all", "cut"), default="all",
                   help="exit 1 on cut-off lines and raw TeX (all) or on cut-off lines only (cut)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    html, mathjax = pathlib.Path(args.html), pathlib.Path(args.mathjax)
    pages = sorted((html / "book").glob("*.html"))
    if not pages:
        print(f"check_pages: no pages under {html / 'book'}; build the book first (bash scripts/build-book.sh)",
              file=sys.stderr)
        return 2
    if not (mathjax / "mathjax" / "tex-mml-chtml.js").is_file():
        print(f"check_pages: no MathJax {MATHJAX_VERSION} under {mathjax}; install it with "
              "bash scripts/install-mathjax.sh (scripts/check-pages.sh does)", file=sys.stderr)
        return 2
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("check_pages: needs Playwright: pip install playwright", file=sys.stderr)
        return 2
    browser_path = args.browser or shutil.which("chromium") or shutil.which("chromium-browser")
    widths = sorted(args.widths, reverse=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path)
        report = {width: read_pages(browser, pages, width, mathjax) for width in widths}
        browser.close()
    for width in widths:
        print_table(width, report[width])
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"widths": widths, "pages": report}, indent=1) + "\n")
    return 1 if failures(report, widths, args.fail_on) else 0


def read_pages(browser, pages: list, width: int, mathjax: pathlib.Path) -> dict:
    """Every page at one width: the layout measures, then the maths once MathJax has typeset it."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.route("**/*", lambda route: serve_mathjax(route, mathjax))
    report = {}
    for path in pages:
        page.goto(path.as_uri(), wait_until="load")
        typeset = page.evaluate(TYPESET)
        report[path.stem] = {**page.evaluate(MEASURE), **page.evaluate(MATHS), "typeset": typeset}
    page.close()
    return report


def serve_mathjax(route, mathjax: pathlib.Path) -> None:
    """Answer MathJax's requests (its script, components and fonts) from the local copy, let the book's
    own files load, and refuse everything else on the network."""
    url = route.request.url
    if url.startswith("file:"):
        route.continue_()
        return
    local = local_package_file(url, mathjax)
    if local is not None and local.is_file():
        route.fulfill(path=str(local))
        return
    route.abort()


def local_package_file(url: str, modules: pathlib.Path) -> pathlib.Path | None:
    """The file under ``modules`` (an npm node_modules folder) that a CDN address of an npm package
    names, its version dropped: ``.../npm/mathjax@4.1.1/tex-mml-chtml.js`` is
    ``modules/mathjax/tex-mml-chtml.js``, ``.../npm/@mathjax/mathjax-newcm-font@4/chtml.js`` is
    ``modules/@mathjax/mathjax-newcm-font/chtml.js``; None for any other address."""
    if "/npm/" not in url:
        return None
    parts = url.split("/npm/", 1)[1].split("?")[0].split("#")[0].split("/")
    scoped = parts[0].startswith("@")
    name_end = 2 if scoped else 1
    if len(parts) <= name_end or ".." in parts:
        return None
    package = [*parts[:name_end - 1], parts[name_end - 1].split("@")[0]]
    return modules.joinpath(*package, *parts[name_end:])


def print_table(width: int, report: dict) -> None:
    print(f"\nat {width} px")
    print(f"{'page':<20}{'code lines':>11}{'output lines':>13}{'tables':>7}{'rows':>6}{'cut code':>9}{'cut output':>11}"
          f"{'raw TeX':>8}{'figures':>8}{'captioned':>10}{'sharp':>6}{'TeX errors':>11}{'wide eqs':>9}"
          f"{'cut eqs':>8}{'page overflow':>14}{'height':>8}")
    for name, r in report.items():
        figures = r["figures"]
        print(f"{name:<20}{r['code_lines']:>11}{r['output_lines']:>13}{r['tables']:>7}{r['table_rows']:>6}"
              f"{len(r['cut_code']):>9}{len(r['cut_output']):>11}"
              f"{len(r['raw_tex']):>8}{len(figures):>8}{sum(f['caption'] is not None for f in figures):>10}"
              f"{sum(f['natural_width'] >= 2 * f['shown_width'] > 0 for f in figures):>6}"
              f"{len(r['math_errors']):>11}{len(r['wide_equations']):>9}{len(r['cut_equations']):>8}"
              f"{r['page_overflow']:>14}{r['page_height']:>8}")


def failures(report: dict, widths: list, fail_on: str) -> int:
    """How many things fail: at the widest width the lines and raw TeX; at every width MathJax errors,
    display equations wider than the column and a page that scrolls sideways."""
    widest, bad = widths[0], 0
    for r in report[widest].values():
        bad += len(r["cut_code"]) + len(r["cut_output"])
        if fail_on == "all":
            bad += len(r["raw_tex"])
            bad += r["glance_bottom"] is not None and r["glance_bottom"] > SCREEN
    if fail_on == "all":
        for width in widths:
            for r in report[width].values():
                bad += len(r["math_errors"]) + len(r["wide_equations"]) + (r["page_overflow"] > 0)
    return bad


if __name__ == "__main__":
    sys.exit(main())
