"""One table of faithfulness over several runs: mean ± sample std of each method's figures.

``attnlab faithfulness`` writes one ``faithfulness.json`` per run; an experiment has several
runs per variant (seeds). This script reads them, groups them by variant and prints, per method,
comprehensiveness and sufficiency (ERASER AOPC), the normalised comprehensiveness, Kendall τ
against leave-one-out, and the drop of the target's probability averaged over deleting the top
10, 20, …, 90 % of tokens (read off the deletion curve: the protocol of the AOPC column of
DecompX, Modarressi et al. 2023, Table 1, with deletion in place of ``[MASK]``).

Usage::

    python scripts/faithfulness_table.py --group "1 head" RUN_A/faithfulness RUN_B/... \
        --group "4 heads" RUN_C/faithfulness ... [--json table.json]

A folder may also be a run folder (``RUN/faithfulness`` is read) or the JSON file itself.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

FIGURES = (  # (key in faithfulness.json, column title)
    ("comprehensiveness", "comp. ↑"),
    ("sufficiency", "suff. ↓"),
    ("naopc_comprehensiveness", "NAOPC comp. ↑"),
    ("kendall_tau_loo", "τ vs LOO ↑"),
    ("drop_10_90", "drop 10–90 % ↑"),
)


def read_result(path: Path) -> dict:
    """The faithfulness.json at ``path`` (a file, its folder, or a run folder above it)."""
    folders = (path, path / "faithfulness")
    for candidate in (path, *(folder / "faithfulness.json" for folder in folders)):
        if candidate.is_file():
            return json.loads(candidate.read_text(encoding="utf-8"))
    raise SystemExit(f"no faithfulness.json at {path}")


def figures_of(result: dict) -> dict[str, dict[str, float]]:
    """Per method, the figures of one run (``drop_10_90`` computed from the deletion curve)."""
    shares = result["curve"]
    inner = [i for i, share in enumerate(shares) if 10 <= share <= 90]
    out = {}
    for method, values in result["methods"].items():
        row = {key: values.get(key) for key, _ in FIGURES if key in values}
        curve = values["deletion_curve"]
        row["drop_10_90"] = sum(curve[0] - curve[i] for i in inner) / len(inner)
        out[method] = row
    return out


def summarise(runs: list[dict]) -> dict[str, dict[str, tuple[float, float]]]:
    """Per method and figure: (mean, sample std) over runs (std 0 for one run)."""
    per_run = [figures_of(r) for r in runs]
    methods = list(per_run[0])
    table = {}
    for method in methods:
        table[method] = {}
        for key, _ in FIGURES:
            values = [run[method][key] for run in per_run
                      if method in run and run[method].get(key) is not None]
            if values:
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                table[method][key] = (statistics.fmean(values), std)
    return table


def markdown(groups: dict[str, dict], seconds: dict[str, list[float]]) -> str:
    """The table: one row per (group, method), methods in the first group's order."""
    lines = ["| model | method | " + " | ".join(title for _, title in FIGURES) + " |",
             "| --- | --- | " + " | ".join("---:" for _ in FIGURES) + " |"]
    for name, table in groups.items():
        ranked = sorted(table, key=lambda m: -table[m]["comprehensiveness"][0])
        for method in ranked:
            cells = []
            for key, _ in FIGURES:
                if key not in table[method]:
                    cells.append("–")  # not measured (e.g. --naopc-beam 0)
                    continue
                mean, std = table[method][key]
                cells.append(f"{mean:.3f} ± {std:.3f}" if std else f"{mean:.3f}")
            lines.append(f"| {name} | {method} | " + " | ".join(cells) + " |")
    for name, times in seconds.items():
        lines.append(f"\n{name}: {len(times)} run(s), total time per run "
                     + ", ".join(f"{t:.0f} s" for t in times))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", nargs="+", action="append", required=True,
                        metavar=("NAME", "FOLDER"), help="a name, then its runs' folders")
    parser.add_argument("--json", type=Path, help="also write the table as JSON here")
    args = parser.parse_args(argv)
    groups, seconds = {}, {}
    for name, *folders in args.group:
        if not folders:
            parser.error(f"--group {name!r} names no folder")
        runs = [read_result(Path(f)) for f in folders]
        groups[name] = summarise(runs)
        seconds[name] = [r["seconds"]["total"] for r in runs]
    print(markdown(groups, seconds))
    if args.json is not None:
        args.json.write_text(json.dumps(groups, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
