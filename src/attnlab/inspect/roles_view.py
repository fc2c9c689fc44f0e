"""A :class:`~attnlab.inspect.roles_probe.RoleTable` as one self-contained HTML page: the heat
map of heads × roles as a table (``attnlab heads RUN --roles --html roles.html``).

The page (``roles.html`` and ``roles.js`` beside this module) is built like the attention
explorer (:mod:`attnlab.inspect.html`): the table's data travel as JSON in a
``<script type="application/json">`` block (:func:`~attnlab.inspect.html.embed_json`, so no
name can close it), the script writes every text with ``textContent``, and the page's
Content-Security-Policy allows no network access. Each cell carries its score exactly in
``data-score`` and ``title``; the roles in [0, 1] are shaded on one scale, the entropy (nats) is
written unshaded; the ``k`` best heads of each role are marked.
"""

from __future__ import annotations

from attnlab.inspect.html import render_page
from attnlab.inspect.roles_probe import RoleTable
from attnlab.inspect.roles_report import PICTURED

__all__ = ["roles_page", "roles_payload"]


def roles_payload(table: RoleTable, name: str | None = None, k: int = 3) -> dict:
    """The JSON-ready data the page draws: :meth:`RoleTable.to_dict` (every head's scores, the
    top ``k`` per role, the probe), the name shown (default the table's model), the shaded
    roles and ``k``."""
    return {**table.to_dict(k), "model": table.model if name is None else str(name),
            "shaded": [r for r in table.roles if r in PICTURED], "k": k}


def roles_page(table: RoleTable, name: str | None = None, k: int = 3) -> str:
    """The whole HTML page (no network, script and data inline) for ``table``; ``name`` is the
    model as shown (default ``table.model``), ``k`` the best heads marked per role."""
    return render_page("roles.html", roles_payload(table, name, k), scripts=("roles.js",),
                       css=None)
