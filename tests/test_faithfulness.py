"""The faithfulness metrics on hand-built inputs whose figures are known exactly.

The model is a fake ``probability(keep, rows)``: an additive one (the target probability a base
plus one weight per kept token), for which every AOPC, curve point and bound is a sum written
out by hand below, and one with an interaction where greedy search misses the highest AOPC.
"""

from __future__ import annotations

import math

import pytest
import torch

from attnlab.errors import InputError
from attnlab.inspect.faithfulness import (
    InputFaithfulness,
    Prober,
    kendall_tau_b,
    measure_input,
    ordering,
    random_floor,
    summarise,
    tokens_in,
)
from attnlab.inspect.faithfulness_bounds import aopc_bounds
from attnlab.inspect.faithfulness_report import beats_random, verdict

# [CLS] a b c d [SEP]: p(target) = 0.3 + the weights of the tokens kept (0.95 with all of them)
WEIGHTS = torch.tensor([0.0, 0.3, 0.1, 0.2, 0.05, 0.0], dtype=torch.float64)
REMOVABLE = [False, True, True, True, True, False]
GOOD = torch.tensor([[0.0, 3.0, 1.0, 2.0, 0.5, 9.0]])  # a c b d: the true order ([SEP] unranked)
BAD = torch.tensor([[0.0, 0.0, 2.0, 1.0, 3.0, 0.0]])  # d b c a: the reverse
MIDDLE = torch.tensor([[0.0, 2.0, 1.0, 3.0, 0.0, 0.0]])  # c a b d


def additive(keep: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    assert keep[:, 0].all() and keep[:, -1].all(), "specials are never removed"
    return 0.3 + (keep.double() * WEIGHTS).sum(1)


def test_a_bin_holds_the_ceiling_of_its_share():
    assert [tokens_in(p, 10) for p in (1, 5, 10, 20, 50)] == [1, 1, 1, 2, 5]
    assert [tokens_in(p, 21) for p in (1, 5, 10, 20, 50)] == [1, 2, 3, 5, 11]
    assert tokens_in(10, 20) == 2 and tokens_in(100, 7) == 7 and tokens_in(0, 7) == 0
    assert tokens_in(1, 0) == 0


def test_ordering_ranks_removable_tokens_by_score_ties_left_first():
    scores = torch.tensor([5.0, 1.0, 3.0, 1.0, 3.0, 9.0])
    removable = torch.tensor([False, True, True, True, True, False])
    assert ordering(scores, removable).tolist() == [2, 4, 1, 3]
    with pytest.raises(ValueError, match="finite"):
        ordering(torch.tensor([0.0, float("nan"), 1.0]), torch.tensor([False, True, True]))


def test_aopc_and_curves_of_an_additive_model_by_hand():
    found = measure_input({"good": GOOD, "bad": BAD}, REMOVABLE, additive, reference=None)
    good, bad = found["good"], found["bad"]
    # n = 4 removable: bins 1, 5, 10, 20 % hold 1 token, 50 % holds 2; AOPC = mean of the 5
    # good: removing a drops 0.3 (four bins), removing a, c drops 0.5
    assert good.comprehensiveness == pytest.approx((4 * 0.3 + 0.5) / 5)  # 0.34
    # only a kept: 0.6 (drop 0.35); a, c kept: 0.8 (drop 0.15)
    assert good.sufficiency == pytest.approx((4 * 0.35 + 0.15) / 5)  # 0.31
    assert bad.comprehensiveness == pytest.approx((4 * 0.05 + 0.15) / 5)  # 0.07
    assert bad.sufficiency == pytest.approx((4 * 0.6 + 0.5) / 5)  # 0.58
    # curve step c % removes ceil(4c/100) tokens: 0,1,1,2,2,2,3,3,4,4,4
    assert good.deletion == pytest.approx([0.95, 0.65, 0.65, 0.45, 0.45, 0.45, 0.35, 0.35, 0.3,
                                           0.3, 0.3])
    assert good.insertion == pytest.approx([0.3, 0.6, 0.6, 0.8, 0.8, 0.8, 0.9, 0.9, 0.95, 0.95,
                                            0.95])
    assert bad.deletion == pytest.approx([0.95, 0.9, 0.9, 0.8, 0.8, 0.8, 0.6, 0.6, 0.3, 0.3,
                                          0.3])
    # greedy is exact for an additive model: the true order is the highest comprehensiveness
    # and the lowest sufficiency, its reverse the opposite
    assert (good.naopc_comprehensiveness, good.naopc_sufficiency) == pytest.approx((1.0, 0.0))
    assert (bad.naopc_comprehensiveness, bad.naopc_sufficiency) == pytest.approx((0.0, 1.0))
    assert good.kendall_tau is None


def test_normalised_aopc_of_an_ordering_between_the_bounds():
    middle = measure_input({"middle": MIDDLE}, REMOVABLE, additive, reference=None)["middle"]
    # comprehensiveness: remove c (0.2, four bins), then c, a (0.5): 0.26; bounds 0.07, 0.34
    assert middle.comprehensiveness == pytest.approx((4 * 0.2 + 0.5) / 5)
    assert middle.naopc_comprehensiveness == pytest.approx((0.26 - 0.07) / (0.34 - 0.07))
    # sufficiency: only c (0.5: drop 0.45), only c, a (0.8: drop 0.15): 0.39; bounds 0.31, 0.58
    assert middle.sufficiency == pytest.approx((4 * 0.45 + 0.15) / 5)
    assert middle.naopc_sufficiency == pytest.approx((0.39 - 0.31) / (0.58 - 0.31))


def test_log_probability_measures_the_drop_of_the_log():
    good = measure_input({"good": GOOD}, REMOVABLE, additive, measure="log_probability",
                         reference=None)["good"]
    assert good.comprehensiveness == pytest.approx(
        (4 * math.log(0.95 / 0.65) + math.log(0.95 / 0.45)) / 5)
    assert good.sufficiency == pytest.approx((4 * math.log(0.95 / 0.6) + math.log(0.95 / 0.8)) / 5)
    assert good.deletion[1] == pytest.approx(0.65)  # curves stay probabilities


# [CLS] x y z w [SEP]: p = 1 − drop(removed), where y and z together matter most
def interacting(keep: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    gone = ~keep[:, 1:5]
    x, y, z = gone[:, 0].double(), gone[:, 1].double(), gone[:, 2].double()
    return (1.0 - (0.3 * x + 0.25 * y + 0.25 * z + 0.4 * y * z - 0.2 * x * y)).clamp(0, 1)


def test_greedy_misses_a_pair_that_beam_search_finds():
    removable = torch.tensor([False, True, True, True, True, False])
    full = torch.ones(1, dtype=torch.float64)
    # bins: four of 1 token, one of 2. Greedy takes x (0.3) then x, z (0.55): (1.2 + 0.55) / 5;
    # a beam of 2 keeps y too, and y, z drops 0.9: (4 * 0.25 + 0.9) / 5
    greedy = aopc_bounds(removable, full, Prober(interacting), bins=(1, 5, 10, 20, 50), beam=1)
    beam = aopc_bounds(removable, full, Prober(interacting), bins=(1, 5, 10, 20, 50), beam=2)
    assert float(greedy.comprehensiveness[1]) == pytest.approx(0.35)
    assert float(beam.comprehensiveness[1]) == pytest.approx(0.38)
    # the lowest: remove w (0), then w and the least harmful, y (0.25): 0.05
    assert float(greedy.comprehensiveness[0]) == pytest.approx(0.25 / 5)
    # an ordering that beats the greedy bound widens it: its NAOPC is 1, not above
    pair = torch.tensor([[0.0, 1.0, 4.0, 3.0, 0.0, 0.0]])  # y z x w
    found = measure_input({"pair": pair}, removable.tolist(), interacting, reference=None)
    assert found["pair"].comprehensiveness == pytest.approx(0.38)
    assert found["pair"].naopc_comprehensiveness == pytest.approx(1.0)


def test_several_decisions_average_and_the_prefix_is_never_removed():
    # a translation: source s1 s2 s3 [EOS], then the prefix [BOS] t1 — two decisions
    removable = [True, True, True, False, False, False]
    weights = torch.tensor([[0.5, 0.2, 0.1, 0, 0, 0], [0.0, 0.1, 0.6, 0, 0, 0]],
                           dtype=torch.float64)

    def probability(keep, rows):
        assert keep[:, 3:].all(), "the prefix and specials stay"
        return 0.1 + (keep.double() * weights[rows]).sum(1)

    scores = torch.tensor([[3.0, 2.0, 1.0, 0, 0, 0], [1.0, 2.0, 3.0, 0, 0, 0]])  # both right
    found = measure_input({"m": scores, "leave_one_out": scores}, removable, probability,
                          bins=(50,), curve=(0, 100))["m"]
    # n = 3, the 50 % bin holds 2 tokens: decision 0 drops 0.7, decision 1 drops 0.7
    assert found.comprehensiveness == pytest.approx(0.7)
    # only the top 2: decision 0 keeps 0.8 of 0.9 (drop 0.1); decision 1 keeps 0.8 (drop 0.0)
    assert found.sufficiency == pytest.approx((0.1 + 0.0) / 2)
    assert found.deletion == pytest.approx([(0.9 + 0.8) / 2, 0.1])
    assert found.kendall_tau == pytest.approx(1.0)


def test_an_input_without_removable_tokens_is_left_out():
    assert measure_input({"m": torch.zeros(1, 2)}, [False, False], additive) is None


def test_bad_settings_name_the_setting():
    with pytest.raises(InputError, match="measure"):
        measure_input({"m": GOOD}, REMOVABLE, additive, measure="odds")
    with pytest.raises(InputError, match="bins"):
        measure_input({"m": GOOD}, REMOVABLE, additive, bins=(0, 50))


def test_each_distinct_perturbation_is_asked_once_in_batches():
    asked, sizes = [], []

    def counting(keep, rows):
        asked.extend(zip(rows.tolist(), map(tuple, keep.tolist()), strict=True))
        sizes.append(len(rows))
        return additive(keep, rows)

    prober = Prober(counting, batch=7)
    measure_input({"good": GOOD, "bad": BAD, "middle": MIDDLE}, REMOVABLE, prober)
    assert len(asked) == len(set(asked)) == prober.rows
    assert max(sizes) <= 7 and prober.calls == len(sizes)
    assert len(asked) <= 2 ** 4  # no more than the subsets of 4 removable tokens


def test_kendall_tau_b_by_hand_and_against_scipy():
    assert kendall_tau_b(torch.tensor([1.0, 2, 3, 4]), torch.tensor([1.0, 3, 2, 4])) == \
        pytest.approx((5 - 1) / 6)
    # ties: pairs untied in x 5, in y 5; concordant 4, discordant 0 -> 4 / sqrt(5 · 5)
    assert kendall_tau_b(torch.tensor([1.0, 1, 2, 3]), torch.tensor([1.0, 2, 2, 3])) == \
        pytest.approx(0.8)
    assert kendall_tau_b(torch.tensor([1.0, 1, 1]), torch.tensor([1.0, 2, 3])) is None
    assert kendall_tau_b(torch.tensor([1.0]), torch.tensor([2.0])) is None
    stats = pytest.importorskip("scipy.stats")
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        x = torch.randint(0, 4, (12,), generator=generator).double()
        y = torch.randint(0, 4, (12,), generator=generator).double()
        assert kendall_tau_b(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)


def row(comp: float, suff: float, naopc: float | None, tau: float | None) -> InputFaithfulness:
    return InputFaithfulness(comp, suff, naopc, naopc, tau, [1.0, 0.5, 0.0], [0.0, 0.5, 1.0])


def test_summary_means_over_inputs_and_counts_the_undefined():
    s = summarise([row(0.2, 0.1, 0.5, 1.0), row(0.4, 0.3, None, None)], curve=(0, 50, 100))
    assert (s.comprehensiveness, s.sufficiency) == pytest.approx((0.3, 0.2))
    assert (s.naopc_comprehensiveness, s.n_naopc, s.kendall_tau_loo, s.n_kendall) == \
        (0.5, 1, 1.0, 1)
    assert s.comprehensiveness_sem == pytest.approx(math.sqrt(0.02) / math.sqrt(2))
    assert s.deletion_auc == pytest.approx(0.5) and s.insertion_auc == pytest.approx(0.5)


def test_random_floor_is_the_mean_and_sample_std_over_seeds():
    seeds = [summarise([row(c, 0.5, 0.5, 0.0)], curve=(0, 50, 100)) for c in (0.1, 0.2, 0.3)]
    mean, spread = random_floor(seeds)
    assert mean["comprehensiveness"] == pytest.approx(0.2)
    assert spread["comprehensiveness"] == pytest.approx(0.1)  # sample std (n − 1)
    assert spread["sufficiency"] == pytest.approx(0.0)
    assert random_floor(seeds[:1])[1]["comprehensiveness"] is None


def test_the_verdict_says_who_beats_random_beyond_its_spread():
    def method(comp, suff=0.3):
        return {"comprehensiveness": comp, "sufficiency": suff}

    result = {"methods": {
        "integrated_gradients": method(0.30, 0.10), "attention": method(0.13),
        "rollout": method(0.11), "leave_one_out": method(0.25),
        "random": {**method(0.10, 0.35), "seeds": [0, 1, 2],
                   "spread": {"comprehensiveness": 0.01, "sufficiency": 0.02}}}}
    assert beats_random(result, "attention")[0]  # 0.03 above: 3 std
    assert not beats_random(result, "rollout")[0]  # 0.01 above: 1 std
    assert beats_random(result, "attention", "sufficiency")[0]  # lower is better: 0.05 below
    lines = "\n".join(verdict(result))
    assert "**integrated_gradients** (0.300), ahead of leave_one_out (0.250) by 0.050" in lines
    assert "attention beats random beyond its spread" in lines
    assert "rollout does not beat random beyond its spread" in lines
