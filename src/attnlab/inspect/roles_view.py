"""A :class:`~attnlab.inspect.roles_probe.RoleTable` as one self-contained HTML page: the heat
map of heads × roles as a table (``attnlab heads RUN --roles --html roles.html``), or as the
"Roles" tab of the attention explorer (:func:`with_roles`; ``attnlab show RUN TEXT --html``),
where the best induction and previous-token heads are marked (:func:`marked_heads`) and a click
shows one on the sentence (``rolestab.js``).

The page (``roles.html`` and ``roles.js`` beside this module) is built like the attention
explorer (:mod:`attnlab.inspect.html`): the table's data travel as JSON in a
``<script type="application/json">`` block (:func:`~attnlab.inspect.html.embed_json`, so no
name can close it), the script writes every text with ``textContent``, and the page's
Content-Security-Policy allows no network access. Each cell carries its score exactly in
``data-score`` and ``title``; the roles in [0, 1] are shaded on one scale, the entropy (nats) is
written unshaded; the ``k`` best heads of each role are marked.
"""

from __future__ import annotations

from attnlab.inspect.html import AttentionView, render_page
from attnlab.inspect.roles_probe import RoleTable
from attnlab.inspect.roles_report import PICTURED

__all__ = ["MARKED_ROLES", "MARK_LEAST", "marked_heads", "roles_page", "roles_payload",
           "with_roles"]

MARKED_ROLES = ("induction", "previous")  # roles whose best heads the explorer marks
MARK_LEAST = 0.4  # the least score of a marked head: below it no head is called one


def marked_heads(table: RoleTable, k: int = 3, least: float = MARK_LEAST) -> list[dict]:
    """The heads the explorer marks: for each of :data:`MARKED_ROLES`, its ``k`` best heads
    that score at least ``least``, best first (``role``, ``rank`` from 1, ``attention``,
    ``layer``, ``head``, ``score``)."""
    return [{"role": role, "rank": rank, "attention": h.attention, "layer": h.layer,
             "head": h.head, "score": h.scores[role]}
            for role in MARKED_ROLES if role in table.roles
            for rank, h in enumerate(table.top(role, k), start=1) if h.scores[role] >= least]


def roles_payload(table: RoleTable, name: str | None = None, k: int = 3) -> dict:
    """The JSON-ready data the page draws: :meth:`RoleTable.to_dict` (every head's scores, the
    top ``k`` per role, the probe), the name shown (default the table's model), the shaded
    roles, ``k``, and the marked heads (:func:`marked_heads`) with the least score marked."""
    return {**table.to_dict(k), "model": table.model if name is None else str(name),
            "shaded": [r for r in table.roles if r in PICTURED], "k": k,
            "marked": marked_heads(table, k), "mark_least": MARK_LEAST}


def with_roles(view: AttentionView, table: RoleTable, k: int = 3) -> AttentionView:
    """The attention explorer ``view`` with a "Roles" tab: ``table``'s heat map, its ``k``
    best heads per role, and its marked heads starred in the attention view."""
    return view.with_data(roles=roles_payload(table, k=k))


def roles_page(table: RoleTable, name: str | None = None, k: int = 3) -> str:
    """The whole HTML page (no network, script and data inline) for ``table``; ``name`` is the
    model as shown (default ``table.model``), ``k`` the best heads marked per role."""
    return render_page("roles.html", roles_payload(table, name, k), scripts=("roles.js",),
                       css=None)
