"""Print the whole book to one PDF: the single-page HTML build, typeset by MathJax 4 from a local
copy and printed by a headless Chromium. Nothing is fetched from the network.

Usage (after ``jupyter-book build . --builder singlehtml``; ``scripts/build-pdf.sh`` runs both)::

    python scripts/build_pdf.py --out _build/html/maskdiff-tutor.pdf
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from check_pages import MATHJAX, ROOT, TYPESET, serve_mathjax  # noqa: E402  (the same local MathJax)

# Print layout: the navigation, the launch buttons and the folded toggles are of no use on paper;
# every folded solution and code cell prints open.
PRINT_CSS = """
.skip-link, #pst-back-to-top, details > summary, .bd-header, .bd-sidebar-primary, .bd-sidebar-secondary,
.header-article, .prev-next-area, .bd-footer, .bd-footer-content, button.toggle-button, .toggle-hidden-button,
.headerlink { display: none !important; }
details { display: block; }
details > * { display: block !important; }
.toggle-hidden { display: block !important; visibility: visible !important; height: auto !important; }
mjx-container[display="true"] { overflow: visible !important; }
body { font-size: 11pt; }
"""


def serve(route, root: pathlib.Path, mathjax: pathlib.Path) -> None:
    """The page's own files, its static files and images from the build's root (the single-page build
    links them relative to book/, one folder too deep), and MathJax from the local copy."""
    url = route.request.url
    for folder in ("_static", "_images"):
        if url.startswith("file:") and f"/book/{folder}/" in url:
            local = root / folder / url.split(f"/book/{folder}/", 1)[1].split("?")[0]
            if local.is_file():
                route.fulfill(path=str(local))
                return
    serve_mathjax(route, mathjax)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--html", default=str(ROOT / "_build" / "singlehtml" / "book" / "intro.html"),
                   help="the single-page build (its root document)")
    p.add_argument("--out", default=str(ROOT / "_build" / "html" / "maskdiff-tutor.pdf"), help="the PDF to write")
    p.add_argument("--mathjax", default=str(MATHJAX),
                   help="the node_modules folder holding npm's mathjax@4 and its font")
    p.add_argument("--browser", default=None, help="a Chromium executable (default: chromium on PATH)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    page_file, mathjax, out = pathlib.Path(args.html), pathlib.Path(args.mathjax), pathlib.Path(args.out)
    for needed, how in ((page_file, "jupyter-book build . --builder singlehtml"),
                        (mathjax / "mathjax" / "tex-mml-chtml.js", "bash scripts/install-mathjax.sh")):
        if not needed.is_file():
            print(f"build_pdf: {needed} is missing; make it with: {how}", file=sys.stderr)
            return 2
    from playwright.sync_api import sync_playwright

    browser_path = args.browser or shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path)
        page = browser.new_page(viewport={"width": 1000, "height": 1200})
        page.route("**/*", lambda route: serve(route, page_file.parent.parent, mathjax))
        page.goto(page_file.resolve().as_uri(), wait_until="load")
        page.evaluate(TYPESET)
        page.add_style_tag(content=PRINT_CSS)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.pdf(path=str(out), format="A4", print_background=True,
                 margin={"top": "15mm", "bottom": "15mm", "left": "14mm", "right": "14mm"})
        browser.close()
    print(f"build_pdf: wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
