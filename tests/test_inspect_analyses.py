"""Rollout, head statistics, head importance and pruning against hand-computed references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attnlab.attention import MultiHeadAttention
from attnlab.inspect import (
    attention_modules,
    attention_rollout,
    capture,
    head_gates,
    head_importance,
    head_statistics,
    prune_heads,
    restore_pruning,
)
from attnlab.inspect.pruning import KEPT_HEADS_KEY
from tiny_encoder import TinyEncoder, tiny_batch

# --- rollout ----------------------------------------------------------------------------------

A1 = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
A2 = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
# By hand: Â1 = [[1, 0], [.25, .75]], Â2 = [[.75, .25], [0, 1]], R = Â2 Â1:
R_HAND = torch.tensor([[0.8125, 0.1875], [0.25, 0.75]])


def test_rollout_two_layers_by_hand():
    out = attention_rollout([A1[None, None], A2[None, None]])
    torch.testing.assert_close(out.joint[0], R_HAND)
    torch.testing.assert_close(out.relevance[0], torch.tensor([0.8125, 0.1875]))
    mean = attention_rollout([A1[None, None], A2[None, None]], pooling="mean").relevance[0]
    torch.testing.assert_close(mean, torch.tensor([0.53125, 0.46875]))


def test_rollout_averages_heads():
    # two heads whose mean is A1 (and A2): same rollout as the single-head example
    h1 = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]])  # (H, L, L)
    h2 = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]]])
    torch.testing.assert_close(h1.mean(0), A1)
    torch.testing.assert_close(h2.mean(0), A2)
    out = attention_rollout(torch.stack([h1[None], h2[None]]))  # (N, B, H, L, L)
    torch.testing.assert_close(out.joint[0], R_HAND)


def test_rollout_ignores_padding():
    def pad(a, junk):  # third position is padding: no key weight; its query row is junk
        w = torch.zeros(3, 3)
        w[:2, :2] = a
        w[2] = junk
        return w[None, None]

    mask = torch.tensor([[1, 1, 0]])
    out = attention_rollout([pad(A1, torch.tensor([0.3, 0.7, 0.0])),
                             pad(A2, torch.tensor([0.9, 0.1, 0.0]))], mask)
    torch.testing.assert_close(out.joint[0, :2, :2], R_HAND)
    assert out.joint[0, 2].abs().sum() == 0 and out.joint[0, :, 2].abs().sum() == 0
    mean = attention_rollout([pad(A1, torch.tensor([0.3, 0.7, 0.0])),
                              pad(A2, torch.tensor([0.9, 0.1, 0.0]))], mask, pooling="mean")
    torch.testing.assert_close(mean.relevance[0], torch.tensor([0.53125, 0.46875, 0.0]))


def test_rollout_rows_sum_to_one_on_a_model():
    model = TinyEncoder(n_layers=3).eval()
    ids, mask = tiny_batch()
    with torch.no_grad(), capture(model) as cap:
        model(ids, mask)
    out = attention_rollout(cap.stack(), mask)
    torch.testing.assert_close(out.relevance.sum(-1), torch.ones(3))
    assert (out.relevance[mask == 0] == 0).all()


def test_rollout_bad_input():
    with pytest.raises(ValueError, match=r"\(B, H, L, L\)"):
        attention_rollout([torch.rand(1, 2, 3, 4)])
    with pytest.raises(ValueError, match="pooling"):
        attention_rollout([A1[None, None]], pooling="max")
    with pytest.raises(ValueError, match="attention_mask must have shape"):
        attention_rollout([A1[None, None]], torch.ones(1, 3))
    with pytest.raises(ValueError, match="do not match"):
        attention_rollout([A1[None, None], torch.rand(1, 1, 3, 3)])


# --- head statistics --------------------------------------------------------------------------

def test_statistics_by_hand():
    eye = torch.eye(3)
    uniform = torch.full((3, 3), 1 / 3)
    w = torch.stack([eye, uniform])[None]  # (1, 2, 3, 3)
    special = torch.tensor([[1, 0, 0]])
    s = head_statistics(w, special_mask=special)
    torch.testing.assert_close(s.entropy, torch.tensor([0.0, math.log(3)]))
    torch.testing.assert_close(s.distance, torch.tensor([0.0, 8 / 9]))  # rows: 1, 2/3, 1
    torch.testing.assert_close(s.special, torch.tensor([1 / 3, 1 / 3]))  # eye: row 0 only
    assert s.queries == 3


def test_statistics_exclude_padding_and_merge():
    model = TinyEncoder().eval()
    ids, mask = tiny_batch(batch=2, length=7)  # row 1 has 5 real tokens
    with torch.no_grad(), capture(model, layers=[1]) as cap:
        model(ids, mask)
    padded = head_statistics(cap[0][1:], mask[1:])
    with torch.no_grad(), capture(model, layers=[1]) as short:
        model(ids[1:, :5], mask[1:, :5])
    alone = head_statistics(short[0])
    torch.testing.assert_close(padded.entropy, alone.entropy)
    torch.testing.assert_close(padded.distance, alone.distance)
    merged = head_statistics(cap[0][:1], mask[:1]) + padded
    both = head_statistics(cap[0], mask)
    assert merged.queries == both.queries == 12
    torch.testing.assert_close(merged.entropy, both.entropy)


def test_statistics_bad_input():
    with pytest.raises(ValueError, match="special_mask must have shape"):
        head_statistics(torch.rand(1, 2, 3, 3), special_mask=torch.ones(1, 4))
    with pytest.raises(ValueError, match="no real token"):
        head_statistics(torch.rand(1, 2, 3, 3), torch.zeros(1, 3))


# --- head importance --------------------------------------------------------------------------

def per_example_ce(model, batch):
    ids, mask, labels = batch
    return F.cross_entropy(model(ids, mask), labels, reduction="none")


def test_importance_matches_finite_differences():
    model = TinyEncoder(n_layers=2).double().eval()
    ids, mask = tiny_batch(batch=3)
    labels = torch.tensor([0, 1, 1])
    batches = [(ids[:2], mask[:2], labels[:2]), (ids[2:], mask[2:], labels[2:])]
    imp = head_importance(model, batches, per_example_ce)
    assert imp.names == ["layers.0.attn", "layers.1.attn"] and imp.examples == 3

    eps = 1e-6
    expected = torch.zeros(2, 4, dtype=torch.float64)
    with torch.no_grad():
        for b in range(3):
            one = (ids[b:b + 1], mask[b:b + 1], labels[b:b + 1])
            for layer, name in enumerate(imp.names):
                for h in range(4):
                    losses = []
                    for sign in (1, -1):
                        gate = torch.ones(4, dtype=torch.float64)
                        gate[h] += sign * eps
                        with head_gates(model, {name: gate}):
                            losses.append(per_example_ce(model, one))
                    expected[layer, h] += ((losses[0] - losses[1]) / (2 * eps)).abs().item() / 3
    torch.testing.assert_close(imp.matrix().double(), expected, rtol=1e-4, atol=1e-7)
    assert all(p.grad is None for p in model.parameters())
    ranked = imp.ranking()
    assert expected.view(-1)[ranked[0][0] * 4 + ranked[0][1]] == expected.min()
    normed = head_importance(model, batches, per_example_ce, normalize=True)
    torch.testing.assert_close(normed.matrix().norm(dim=1), torch.ones(2))


def test_importance_bad_loss():
    model = TinyEncoder()
    ids, mask = tiny_batch()
    with pytest.raises(ValueError, match=r"per-example losses \(B,\)"):
        head_importance(model, [(ids, mask)], lambda m, b: m(*b).sum())
    with pytest.raises(ValueError, match="empty"):
        head_importance(model, [], per_example_ce)


# --- pruning ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [{}, {"d_k": 3, "d_v": 5, "kdim": 7, "vdim": 6}])
def test_mha_prune_equals_head_mask(kwargs):
    mha = MultiHeadAttention(16, 4, **kwargs).eval()
    q = torch.randn(2, 5, 16)
    kv = torch.randn(2, 6, mha.kdim)
    v = torch.randn(2, 6, mha.vdim)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    masked = mha(q, kv, v, attention_mask=mask, head_mask=torch.tensor([1.0, 0.0, 1.0, 0.0]))
    before = sum(p.numel() for p in mha.parameters())
    with torch.no_grad():
        full_w = mha(q, kv, v, attention_mask=mask, need_weights=True).weights
    mha.prune_heads([3, 1])
    assert mha.n_heads == 2
    assert sum(p.numel() for p in mha.parameters()) < before
    pruned = mha(q, kv, v, attention_mask=mask, need_weights=True)
    torch.testing.assert_close(pruned.output, masked.output)
    torch.testing.assert_close(pruned.weights, full_w[:, [0, 2]])
    pruned.output.sum().backward()
    assert mha.q_proj.weight.grad.shape == (2 * mha.d_k, 16)


def test_mha_prune_bad_heads():
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=r"in \[0, 2\)"):
        mha.prune_heads([2])
    with pytest.raises(ValueError, match="cannot prune all 2 heads"):
        mha.prune_heads([0, 1])


def test_model_prune_equals_masking_and_reloads(tmp_path):
    from attnlab.io import load_checkpoint, load_weights, save_checkpoint

    model = TinyEncoder(n_layers=3).eval()
    ids, mask = tiny_batch()
    zero = {"layers.0.attn": torch.tensor([1.0, 0, 1, 1]),
            "layers.2.attn": torch.tensor([0, 0, 1.0, 0])}
    with torch.no_grad(), head_gates(model, zero):
        expected = model(ids, mask)
    kept = prune_heads(model, {0: [1], "layers.2.attn": [0, 1]})
    kept = prune_heads(model, [(2, 1)], previous=kept)  # layer 2 heads now [2, 3] -> drop 3
    assert kept == {"layers.0.attn": [0, 2, 3], "layers.1.attn": [0, 1, 2, 3],
                    "layers.2.attn": [2]}
    assert [m.n_heads for m in attention_modules(model).values()] == [3, 4, 1]
    with torch.no_grad():
        torch.testing.assert_close(model(ids, mask), expected)

    save_checkpoint(tmp_path / "run", model, {"model": {"n_layers": 3}, KEPT_HEADS_KEY: kept})
    ckpt = load_checkpoint(tmp_path / "run")
    fresh = TinyEncoder(n_layers=ckpt.config["model"]["n_layers"]).eval()
    restore_pruning(fresh, ckpt.config[KEPT_HEADS_KEY])
    load_weights(fresh, ckpt)
    with torch.no_grad():
        torch.testing.assert_close(fresh(ids, mask), expected)


def test_model_prune_bad_input():
    model = TinyEncoder()
    with pytest.raises(ValueError, match="cannot prune all 4 heads of layers.1.attn"):
        prune_heads(model, {1: [0, 1, 2, 3]})
    with pytest.raises(ValueError, match="layer 5 out of range"):
        prune_heads(model, {5: [0]})
    assert all(m.n_heads == 4 for m in attention_modules(model).values())  # nothing changed
    with pytest.raises(ValueError, match="increasing order"):
        restore_pruning(model, {"layers.0.attn": [2, 1]})
