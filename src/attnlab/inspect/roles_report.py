"""A :class:`~attnlab.inspect.roles_probe.RoleTable` as text and as a heat map of heads × roles
(what ``attnlab heads RUN --roles`` prints and draws)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from attnlab.inspect.roles_probe import RoleTable

__all__ = ["format_roles", "roles_figure"]

PICTURED = ("previous", "next", "first", "cls", "sep", "punctuation", "broad", "duplicate",
            "induction")  # the roles in [0, 1] (entropy in nats is left out of the picture)


def format_roles(table: RoleTable, k: int = 3) -> str:
    """One line per head, one column per role; the ``k`` best heads of each role marked ``*``;
    then the best heads of each role by name."""
    top = {role: {id(h) for h in table.top(role, k)} for role in table.roles}
    width = max(len("head"), *(len(h.label) for h in table.heads))
    lines = ["  ".join(["head".ljust(width), *(f"{r[:11]:>12}" for r in table.roles)])]
    for head in table.heads:
        cells = [f"{head.scores[r]:>11.3f}{'*' if id(head) in top[r] else ' '}"
                 for r in table.roles]
        lines.append("  ".join([head.label.ljust(width), *cells]))
    lines.append("")
    lines.append(f"* the {k} highest of each role. Best heads:")
    for role in table.roles:
        best = ", ".join(f"{h.label} {h.scores[role]:.3f}" for h in table.top(role, k))
        lines.append(f"  {role}: {best}")
    lines.append(f"duplicate/induction on {table.probe.get('sequences')} random sequences of "
                 f"{table.probe.get('repeat_length')} tokens repeated twice; "
                 f"{table.probe.get('exclusions')}")
    return "\n".join(lines)


def roles_figure(table: RoleTable) -> Figure:
    """A heat map of heads (rows) × roles (columns), 0 to 1, the values written in."""
    values = np.array([[h.scores[r] for r in PICTURED] for h in table.heads])  # (heads, roles)
    n_heads = len(table.heads)
    fig = Figure(figsize=(1.0 + 0.75 * len(PICTURED), 1.2 + 0.28 * n_heads))
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto",
                      interpolation="nearest")
    ax.set_xticks(range(len(PICTURED)), PICTURED, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n_heads), [h.label for h in table.heads], fontsize=7)
    if n_heads * len(PICTURED) <= 600:
        for (row, col), value in np.ndenumerate(values):
            ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=6,
                    color="black" if value > 0.6 else "white")
    ax.set_title(f"{table.model}: heads by role", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig
