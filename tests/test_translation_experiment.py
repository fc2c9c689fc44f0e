"""``attnlab experiment heads --task translation``: one head vs 4 vs 8 of a tiny translator on a
slice of Multi30k, the report's figures recomputed from the per-seed numbers, the verdict, the
comparison with Vaswani et al. (2017) Table 3, reuse of finished runs, bad options."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from attnlab.cli import main
from attnlab.tasks.experiment import RunRecord
from attnlab.tasks.seeds import PairedDifference
from attnlab.tasks.translation import experiment
from attnlab.tasks.translation.config import SMALL_RECIPE
from attnlab.tasks.translation.metrics import score_bleu
from attnlab.tasks.translation.report import vaswani_line
from attnlab.tasks.translation.translator import Translator
from attnlab.text import load_parallel_split

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["experiment", "heads", "--task", "translation", "--d-model", "32", "--encoder-layers",
        "1", "--decoder-layers", "1", "--d-ff", "64", "--train-limit", "256", "--vocab-size",
        "400", "--dev-bleu-sentences", "8", "--batch-size", "32", "--max-steps", "6",
        "--eval-steps", "3", "--test-sentences", "32", "--quiet"]
METRICS = {"test_bleu": 2, "test_chrf": 2, "dev_loss": 4}  # compared field -> digits shown


def test_heads_experiment_report(tmp_path, capsys, data_dir):
    out = tmp_path / "exp"
    assert main([*TINY, "--heads", "1,4,8", "--seeds", "2", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    report = (out / "report.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for h, d_k in ((1, 32), (4, 8), (8, 4)):
        assert (out / f"h{h}" / "seed0" / "best").is_dir()
        assert (out / f"h{h}" / "seed1" / "best").is_dir()
        for text in (stdout, report):
            assert f"| h{h} | {h} | {d_k} | " in text
    runs = {v["options"]["n_heads"]: {r["seed"]: r for r in v["runs"]}
            for v in summary["variants"]}
    assert sorted(runs) == [1, 4, 8] and all(sorted(rs) == [0, 1] for rs in runs.values())
    assert len({r["n_parameters"] for rs in runs.values() for r in rs.values()}) == 1
    # Each paired difference, recomputed from the per-seed numbers, as summary and report say.
    listed = {(d["variant"], d["metric"]): d for d in summary["paired_differences"]}
    for h in (4, 8):
        for metric, digits in METRICS.items():
            per_seed = [runs[h][s][metric] - runs[1][s][metric] for s in (0, 1)]
            mean, std = statistics.fmean(per_seed), statistics.stdev(per_seed)
            d = listed[(f"h{h}", metric)]
            assert d["per_seed"] == pytest.approx({"0": per_seed[0], "1": per_seed[1]})
            assert (d["mean"], d["std"]) == pytest.approx((mean, std))
            words = metric.replace("_", " ").replace("bleu", "BLEU").replace("chrf", "chrF")
            weight = "larger" if abs(mean) > std else "no larger"
            shown = f"{words} {mean:+.{digits}f} ± {std:.{digits}f} ({weight} than its spread)"
            assert shown in report and shown in stdout, shown
    # The comparison with Vaswani et al. follows from the means.
    means = {h: statistics.fmean(r["test_bleu"] for r in rs.values()) for h, rs in runs.items()}
    best = max((4, 8), key=means.get)
    assert "h=1 24.9, h=4 25.5, h=8 25.8 BLEU: one head is 0.9 BLEU worse" in report
    assert (f"the best multi-head variant (h={best}) minus one head is "
            f"{means[best] - means[1]:+.2f} BLEU") in report
    assert f"Parameters: {runs[1][0]['n_parameters']:,} for every head count" in report
    # The verdict, last, by the rule the report states: each multi-head count against one head.
    verdict = summary["verdict"]
    assert verdict == summary["findings"][-1] and f"- {verdict}\n" in stdout
    assert verdict.startswith("VERDICT (test BLEU, higher is better): ") and verdict in report
    for h in (4, 8):
        d = listed[(f"h{h}", "test_bleu")]
        clause = (f"{h} heads are ahead of 1 head" if d["mean"] > d["std"] else
                  f"{h} heads are behind 1 head" if -d["mean"] > d["std"] else
                  f"{h} heads vs 1 head: no clear difference")
        ahead = sum(x > 0 for x in d["per_seed"].values())
        assert f"{clause}: {d['mean']:+.2f} ± {d['std']:.2f}, ahead in {ahead} of 2" in verdict
    # The test figures are best/'s sacreBLEU and chrF on the first 32 test sentences.
    first = runs[1][0]
    pairs = load_parallel_split(data_dir / "multi30k", "test_2016_flickr", source_lang="de",
                                target_lang="en")
    hyps = [t.translation for t in Translator.load(out / "h1" / "seed0").translate(
        pairs.sources[:32])]
    score = score_bleu(hyps, pairs.targets[:32])
    assert (first["test_bleu"], first["test_chrf"]) == pytest.approx((score.bleu, score.chrf))
    assert first["test_sentences"] == 32 and first["steps"] == 6
    # A second call reuses the finished runs and their test scores.
    stamps = {p: p.stat().st_mtime_ns for p in (out / "h4" / "seed1" / "result.json",
                                                 out / "h4" / "seed1" / "test.json")}
    assert main([*TINY, "--heads", "1,4,8", "--seeds", "2", "--out", str(out)]) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


@pytest.mark.parametrize("options", [
    ["--heads", "4,8"],  # no single head to compare with
    ["--heads", "1,3"],  # 3 does not divide d_model 32
    ["--heads", "1,1"],
    ["--seeds", "0"],
    ["--beam", "0"],
    ["--test-sentences", "0"],
    ["--heads", "1,4", "--lr", "-1"],
])
def test_bad_values_exit_2_before_training(tmp_path, capsys, options):
    out = tmp_path / "exp"
    assert main([*TINY, *options, "--out", str(out)]) == 2
    assert "attnlab experiment: error: " in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("options", [
    ["--heads", "1,x"], ["--n-heads", "4"], ["--no-such-option"]])
def test_bad_options_exit_2(tmp_path, options):
    with pytest.raises(SystemExit) as stop:
        main([*TINY, *options, "--out", str(tmp_path / "exp")])
    assert stop.value.code == 2


def test_positional_is_not_a_translation_experiment(tmp_path):
    with pytest.raises(SystemExit) as stop:
        main(["experiment", "positional", "--task", "translation", "--out", str(tmp_path)])
    assert stop.value.code == 2


def test_the_small_recipe_is_the_default_and_options_override_it(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(experiment, "run_heads_experiment",
                        lambda out, data, model, train, **kw: seen.update(
                            data=data, model=model, train=train, **kw))
    experiment.experiment_from_options(tmp_path, data={}, model={"d_ff": 128},
                                       train={"lr": 5e-4}, first_seed=3)
    assert seen["model"] == {**SMALL_RECIPE["model"], "d_ff": 128}
    assert seen["train"].time_limit == SMALL_RECIPE["train"]["time_limit"]
    assert not seen["train"].decay_to_time_limit  # as the runs measured: the decay follows steps
    assert (seen["train"].lr, seen["train"].seed, seen["train"].label_smoothing) == (5e-4, 3, 0.1)
    assert seen["heads"] == (1, 4, 8)


def _runs(bleu: dict[int, list[float]]) -> dict[int, list[RunRecord]]:
    return {h: [RunRecord(f"h{h}", seed, 10, 100, 100, 1, 1.0, False, {"test_bleu": b})
                for seed, b in enumerate(values)] for h, values in bleu.items()}


def _bleu_differences(runs: dict[int, list[RunRecord]]) -> dict[int, PairedDifference]:
    base = {r.seed: r.metrics["test_bleu"] for r in runs[1]}
    return {h: PairedDifference(f"h{h}", "h1", "test_bleu", {
        r.seed: r.metrics["test_bleu"] - base[r.seed] for r in rs}, True)
        for h, rs in runs.items() if h != 1}


@pytest.mark.parametrize("bleu, says", [
    ({1: [20.0, 20.2], 4: [21.0, 21.3], 8: [21.5, 21.6]},
     "like the paper, our run finds single-head attention worse, by more than its 0.9"),
    ({1: [20.0, 20.2], 4: [20.4, 20.5], 8: [20.1, 20.6]},
     "like the paper, our run finds single-head attention worse, by less than its 0.9"),
    ({1: [22.0, 22.2], 4: [21.0, 21.3], 8: [21.5, 21.6]}, "the other way: in our run "
                                                           "single-head attention does better"),
    ({1: [20.0, 21.0], 4: [20.6, 20.9], 8: [20.2, 20.3]}, "within the spread over seeds"),
])
def test_the_vaswani_comparison_goes_the_way_the_numbers_go(bleu, says):
    runs = _runs(bleu)
    line = vaswani_line(runs, _bleu_differences(runs))
    assert says in line, line
    best = max((4, 8), key=lambda h: statistics.fmean(bleu[h]))
    gap = statistics.fmean(bleu[best]) - statistics.fmean(bleu[1])
    assert f"(h={best}) minus one head is {gap:+.2f} BLEU" in line
    assert not math.isnan(_bleu_differences(runs)[4].std)


def test_one_seed_gives_the_direction_without_a_verdict():
    runs = _runs({1: [18.8], 4: [25.6], 8: [27.2]})
    line = vaswani_line(runs, _bleu_differences(runs))
    assert "from one seed only" in line and "like the paper, single-head attention is worse" in line
    assert "a gap of 8.40 against the paper's 0.9 BLEU" in line and "within the spread" not in line
    runs = _runs({1: [22.0], 4: [21.0], 8: [21.5]})
    assert "unlike the paper" in vaswani_line(runs, _bleu_differences(runs))
