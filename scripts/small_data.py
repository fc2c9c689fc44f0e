"""The default schedule on small data sets: SST-2 training subsets, defaults vs fixed epochs.

For each subset size N (the first N training phrases, ``--train-limit N``) it runs, through the
``attnlab`` command line, ``attnlab train --data sst2 --train-limit N`` three times: with
``--epochs 1`` (the default before the step budget), with the defaults (no ``--epochs``: the
step budget of ``TrainConfig.planned_epochs``) and with ``--epochs 10``; then ``attnlab
evaluate`` on the test split. It prints one table row per run: optimizer steps, epochs run, the
epoch of ``best/``, dev loss and accuracy of ``best/``, test accuracy and the training time.

Usage::

    python scripts/small_data.py [--sizes 5000 10000 20000] [--schedules 1 default 10]
        [--out /tmp/small-data] [--json results.json] [-- extra train options]

Runs go to ``--out`` (a temporary folder by default), never into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ATTNLAB = [sys.executable, "-m", "attnlab.cli"]


def train_and_test(out: Path, size: int, extra: list[str]) -> dict:
    """One run: train into ``out``, evaluate ``best/`` on the test split, return the figures."""
    start = time.perf_counter()
    subprocess.run([*ATTNLAB, "train", "--data", "sst2", "--train-limit", str(size),
                    "--out", str(out), "--quiet", "--overwrite", *extra], check=True)
    seconds = time.perf_counter() - start
    result = json.loads((out / "result.json").read_text(encoding="utf-8"))
    test = subprocess.run([*ATTNLAB, "evaluate", str(out), "--data", "sst2", "--split", "test",
                           "--json"], check=True, capture_output=True, text=True)
    best = result["best_val"]
    return {"size": size, "options": " ".join(extra) or "defaults",
            "steps": result["global_step"], "epochs": len(result["history"]),
            "best_epoch": result["best_epoch"], "dev_loss": best["loss"],
            "dev_accuracy": best["accuracy"],
            "test_accuracy": json.loads(test.stdout)["accuracy"], "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000, 20000])
    parser.add_argument("--out", type=Path, help="folder for the runs (default: a temp folder)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    parser.add_argument("--schedules", nargs="+", default=["1", "default", "10"],
                        help="epochs per run (a number) or 'default' (the step budget) "
                             "[default: 1 default 10]")
    parser.add_argument("extra", nargs="*", help="options added to every `attnlab train`")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = args.out or Path(tempfile.mkdtemp(prefix="attnlab-small-data-"))
    rows = []
    print(f"{'train':>6} {'schedule':<11} {'steps':>5} {'epochs':>6} {'best':>4} "
          f"{'dev loss':>8} {'dev acc':>7} {'test acc':>8} {'time':>6}")
    for size in args.sizes:
        for schedule in args.schedules:
            options = [] if schedule == "default" else ["--epochs", schedule]
            name = f"n{size}-" + (f"epochs{schedule}" if options else "default")
            row = train_and_test(out / name, size, [*options, *args.extra])
            rows.append(row)
            print(f"{size:>6} {row['options']:<11} {row['steps']:>5} {row['epochs']:>6} "
                  f"{row['best_epoch']:>4} {row['dev_loss']:>8.4f} {row['dev_accuracy']:>7.2%} "
                  f"{row['test_accuracy']:>8.2%} {row['seconds']:>5.0f}s", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(f"runs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
