"""Report pages: Jinja2 templates in ``report/templates/`` with one stylesheet, rendered to one
self-contained HTML document each.

Nothing in a page points outside it: the stylesheet is inlined, there is no script, no web font
and no remote image, and plots are PNGs embedded as ``data:`` URIs, so a report can be attached
to a CI run, mailed, or opened offline years later. Autoescaping is on: text from models, studies
and findings (layer names, labels, error messages) cannot become markup.
"""

from __future__ import annotations

import base64
import functools
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from initlab.report.verdicts import LEVEL_COLOURS

if TYPE_CHECKING:
    import jinja2
    from matplotlib.figure import Figure

__all__ = ["figure_data_uri", "render_page"]


@functools.cache
def _environment() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("initlab.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_page(template: str, **context: Any) -> str:
    """Render ``templates/<template>`` (a page extending ``base.html``) with ``context``.

    Every page receives ``level_colours`` (verdict level -> colour, the same the plots use), so
    the badges and the plots cannot disagree on what red means.
    """
    return _environment().get_template(template).render(level_colours=LEVEL_COLOURS, **context)


def figure_data_uri(figure: Figure, *, dpi: int = 100, save_as: Path | None = None) -> str:
    """A matplotlib Figure as a ``data:image/png;base64,...`` URI (for an ``<img src>``).

    With ``save_as``, the same PNG is also written there (its folder created).
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    if save_as is not None:
        save_as.parent.mkdir(parents=True, exist_ok=True)
        save_as.write_bytes(buffer.getvalue())
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
