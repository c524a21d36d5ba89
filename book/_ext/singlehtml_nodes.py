"""Let the single-page HTML build (the book's PDF) render every node the HTML build renders.

Sphinx looks up a custom node's HTML visitor under the builder's name and falls back to its format
("html") only when no extension registered any visitor under that name. sphinx-exercise registers
its nodes under "singlehtml", which hides every other extension's "html" visitors (myst-nb's folded
cells among them) from the single-page build. This copies the missing ones over.
"""


def _share_html_visitors(app) -> None:
    handlers = app.registry.translation_handlers
    if app.builder.name in handlers and app.builder.format == "html":
        for node, visitors in handlers.get("html", {}).items():
            handlers[app.builder.name].setdefault(node, visitors)


def setup(app):
    app.connect("builder-inited", _share_html_visitors)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
