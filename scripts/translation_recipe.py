"""A translation recipe measured end to end, and optionally the nn.Transformer peer beside it.

It trains, through the ``attnlab`` command line, ``attnlab train --task translation --data
multi30k`` with the default recipe (``DEFAULT_RECIPE``; extra options after ``--`` change it),
then scores ``best/`` on test_2016_flickr and test_2017_flickr, greedy and with beam 5
(``attnlab evaluate --json``: cased sacreBLEU and chrF). With ``--peer-minutes M`` it then runs
``../shared/baselines/mt_nn_transformer.py --minutes M`` on the same machine after ours, or,
with ``--alongside``, at the same time as ours, each process on one thread (equal time and
equal share of a 2-core machine), and adds its line. It prints one table row per decoding.

Usage::

    OMP_NUM_THREADS=2 python scripts/translation_recipe.py [--out /tmp/de-en]
        [--peer-minutes 25 [--alongside]] [--json results.json] [-- extra train options]

e.g. the default recipe in 25 minutes (its decay ends with the time): ``-- --time-limit 1500``.
Runs go to ``--out`` (a temporary folder by default), never into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ATTNLAB = [sys.executable, "-m", "attnlab.cli"]
PEER = Path(__file__).resolve().parents[2] / "shared" / "baselines" / "mt_nn_transformer.py"
SPLITS = ("test_2016_flickr", "test_2017_flickr")
PEER_LINE = re.compile(r"(\d+) steps, (\d+) epochs in ([\d.]+) min; test_2016_flickr greedy "
                       r"BLEU ([\d.]+) chrF ([\d.]+)")


def train(out: Path, extra: list[str]) -> dict:
    """Train the recipe into ``out``; its steps, epochs and training time."""
    start = time.perf_counter()
    subprocess.run([*ATTNLAB, "train", "--task", "translation", "--data", "multi30k",
                    "--source", "de", "--target", "en", "--out", str(out), "--quiet",
                    "--overwrite", *extra], check=True)
    result = json.loads((out / "result.json").read_text(encoding="utf-8"))
    return {"steps": result["global_step"], "train_seconds": result["wall_time"],
            "seconds_with_setup": time.perf_counter() - start,
            "best_step": result.get("best_step")}


def score(out: Path, split: str, beam: int) -> dict:
    """``attnlab evaluate``'s figures for one split and beam, with the decoding time."""
    start = time.perf_counter()
    done = subprocess.run([*ATTNLAB, "evaluate", str(out), "--split", split, "--beam",
                           str(beam), "--json"], check=True, capture_output=True, text=True)
    return {**json.loads(done.stdout), "split": split, "beam": beam,
            "decode_seconds": time.perf_counter() - start}


def start_peer(minutes: float) -> subprocess.Popen:
    """Start the peer script for ``minutes`` (its output is read by :func:`peer_result`)."""
    if not PEER.is_file():
        raise SystemExit(f"peer script not found: {PEER}")
    return subprocess.Popen([sys.executable, str(PEER), "--minutes", str(minutes)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def peer_result(process: subprocess.Popen) -> dict:
    """Wait for the peer and read its closing line."""
    stdout, _ = process.communicate()
    match = PEER_LINE.search(stdout)
    if process.returncode != 0 or match is None:
        raise SystemExit(f"the peer failed or printed no result line:\n{stdout[-2000:]}")
    steps, epochs, trained, bleu, chrf = match.groups()
    return {"steps": int(steps), "epochs": int(epochs), "train_seconds": float(trained) * 60,
            "bleu": float(bleu), "chrf": float(chrf), "split": SPLITS[0], "beam": 1}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for the run (default: a temp folder)")
    parser.add_argument("--peer-minutes", type=float, default=None,
                        help="also run the nn.Transformer peer for this many minutes")
    parser.add_argument("--alongside", action="store_true",
                        help="run the peer at the same time as ours, one thread each")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("extra", nargs="*", help="options added to `attnlab train`")
    args = parser.parse_args()
    if args.alongside and args.peer_minutes is None:
        parser.error("--alongside needs --peer-minutes")
    os.environ["OMP_NUM_THREADS"] = "1" if args.alongside else os.environ.get(
        "OMP_NUM_THREADS", "2")
    out = args.out or Path(tempfile.mkdtemp(prefix="attnlab-de-en-"))
    rival = start_peer(args.peer_minutes) if args.alongside else None
    run = train(out, args.extra)
    print(f"attnlab: {run['steps']} steps in {run['train_seconds'] / 60:.1f} min of training "
          f"on {os.environ['OMP_NUM_THREADS']} thread(s) (options: "
          f"{' '.join(args.extra) or 'default recipe'}); run in {out}")
    print(f"{'model':<16} {'split':<17} {'beam':>4} {'BLEU':>6} {'chrF':>6} {'decode':>7}")
    rows = []
    for split in SPLITS:
        for beam in (1, 5):
            row = {"model": "attnlab", **run, **score(out, split, beam)}
            rows.append(row)
            print(f"{'attnlab':<16} {split:<17} {beam:>4} {row['bleu']:>6.2f} "
                  f"{row['chrf']:>6.2f} {row['decode_seconds']:>6.0f}s", flush=True)
    if args.peer_minutes is not None:
        rival = rival or start_peer(args.peer_minutes)
        row = {"model": "nn.Transformer", **peer_result(rival)}
        rows.append(row)
        print(f"{'nn.Transformer':<16} {row['split']:<17} {1:>4} {row['bleu']:>6.2f} "
              f"{row['chrf']:>6.2f}       -   ({row['steps']} steps, {row['epochs']} epochs "
              f"in {row['train_seconds'] / 60:.1f} min)")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    if rows[-1]["model"] == "nn.Transformer":
        ours = rows[0]
        print(f"at equal time, greedy on {SPLITS[0]}: attnlab {ours['bleu']:.2f} vs peer "
              f"{rows[-1]['bleu']:.2f} BLEU ({ours['bleu'] - rows[-1]['bleu']:+.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
