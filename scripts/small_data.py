"""The defaults on small data sets: SST-2 training subsets, over seeds, against other settings.

For each subset size N (the first N training phrases, ``--train-limit N``), each schedule and
each seed it runs ``attnlab train --data sst2 --train-limit N --seed S`` through the command
line, then ``attnlab evaluate`` of ``best/`` on the test split. A schedule is a number of epochs
(``--epochs``), ``default`` (the defaults, which follow the data's size) or any train options in
quotes (``"--batch-size 128"``). It prints a row per run (optimizer steps, epochs run, the epoch
of ``best/``, dev loss and accuracy of ``best/``, test accuracy, training time), then per size
and schedule the mean ± standard deviation over the seeds and the difference from the first
schedule, paired by seed.

Usage::

    python scripts/small_data.py [--sizes 5000 8000 10000 20000] [--seeds 0 1 2]
        [--schedules default 10 "--batch-size 128"] [--jobs 2] [--out DIR]
        [--json results.json] [-- extra train options]

Runs go to ``--out`` (a temporary folder by default), never into the repository; each run uses
one torch thread, and ``--jobs`` runs that many at once.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ATTNLAB = [sys.executable, "-m", "attnlab.cli"]
FIGURES = ("dev_loss", "dev_accuracy", "test_accuracy")


def schedule_options(schedule: str) -> list[str]:
    """``default`` → no options; a number → ``--epochs N``; anything else: options as given."""
    if schedule == "default":
        return []
    return ["--epochs", schedule] if schedule.isdigit() else schedule.split()


def train_and_test(out: Path, size: int, schedule: str, seed: int, extra: list[str]) -> dict:
    """One run: train into ``out``, evaluate ``best/`` on the test split, return the figures."""
    start = time.perf_counter()
    subprocess.run([*ATTNLAB, "train", "--data", "sst2", "--train-limit", str(size),
                    "--seed", str(seed), "--out", str(out), "--quiet", "--overwrite",
                    *schedule_options(schedule), *extra], check=True, capture_output=True)
    seconds = time.perf_counter() - start
    result = json.loads((out / "result.json").read_text(encoding="utf-8"))
    test = subprocess.run([*ATTNLAB, "evaluate", str(out), "--data", "sst2", "--split", "test",
                           "--json"], check=True, capture_output=True, text=True)
    best = result["best_val"]
    return {"size": size, "schedule": schedule, "seed": seed, "steps": result["global_step"],
            "epochs": len(result["history"]), "best_epoch": result["best_epoch"],
            "dev_loss": best["loss"], "dev_accuracy": best["accuracy"],
            "test_accuracy": json.loads(test.stdout)["accuracy"], "seconds": seconds}


def print_row(row: dict) -> None:
    print(f"{row['size']:>6} {row['schedule']:<18} {row['seed']:>4} {row['steps']:>5} "
          f"{row['epochs']:>6} {row['best_epoch']:>4} {row['dev_loss']:>8.4f} "
          f"{row['dev_accuracy']:>7.2%} {row['test_accuracy']:>8.2%} {row['seconds']:>5.0f}s",
          flush=True)


def mean_std(values: list[float], figure: str) -> str:
    """Mean ± std over seeds: a loss to 4 decimals, an accuracy in points to 2."""
    scale, digits = (1, 4) if figure == "dev_loss" else (100, 2)
    spread = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{statistics.fmean(values) * scale:.{digits}f} ± {spread:.{digits}f}"


def print_summary(rows: list[dict], schedules: list[str]) -> None:
    """Per size and schedule: mean ± std over seeds, and the paired difference from the first
    schedule (accuracies in points)."""
    print(f"\n{'train':>6} {'schedule':<18} {'dev loss':>15} {'dev acc %':>15} {'test acc %':>15}"
          f"   difference from {schedules[0]!r}: dev loss, dev acc, test acc")
    for size in sorted({r["size"] for r in rows}):
        first = {r["seed"]: r for r in rows if r["size"] == size and r["schedule"] == schedules[0]}
        for schedule in schedules:
            runs = [r for r in rows if r["size"] == size and r["schedule"] == schedule]
            cells = [mean_std([r[k] for r in runs], k) for k in FIGURES]
            paired = [r for r in runs if r["seed"] in first]
            differences = "" if schedule == schedules[0] or not paired else "   " + "  ".join(
                mean_std([r[k] - first[r["seed"]][k] for r in paired], k) for k in FIGURES)
            print(f"{size:>6} {schedule:<18} {cells[0]:>15} {cells[1]:>15} {cells[2]:>15}"
                  f"{differences}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 8000, 10000, 20000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--schedules", nargs="+", default=["default", "10"],
                        help="'default', a number of epochs, or quoted train options "
                             "[default: default 10]")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once [default: 1]")
    parser.add_argument("--out", type=Path, help="folder for the runs (default: a temp folder)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    parser.add_argument("extra", nargs="*", help="options added to every `attnlab train`")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    out = args.out or Path(tempfile.mkdtemp(prefix="attnlab-small-data-"))
    plan = [(size, schedule, seed) for size in args.sizes for schedule in args.schedules
            for seed in args.seeds]

    def run(item: tuple[int, str, int]) -> dict:
        size, schedule, seed = item
        name = f"n{size}-{re.sub(r'[^A-Za-z0-9.]+', '_', schedule).strip('_')}-s{seed}"
        return train_and_test(out / name, size, schedule, seed, args.extra)

    print(f"{'train':>6} {'schedule':<18} {'seed':>4} {'steps':>5} {'epochs':>6} {'best':>4} "
          f"{'dev loss':>8} {'dev acc':>7} {'test acc':>8} {'time':>6}")
    rows = []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for row in pool.map(run, plan):
            rows.append(row)
            print_row(row)
    print_summary(rows, args.schedules)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(f"runs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
