"""capture(): weights equal need_weights=True, hooks always removed, nesting, fused path kept."""

from __future__ import annotations

import weakref

import pytest
import torch

import attnlab
import attnlab.attention.hooks as hooks
import attnlab.attention.multihead as multihead
import attnlab.inspect.capture as capture_module
import attnlab.inspect.gates as gates_module
from attnlab.attention.hooks import HookPoint, name_hook_points
from attnlab.inspect import attention_modules, capture, head_gates
from tiny_encoder import TinyEncoder, tiny_batch


def reference_weights(model: TinyEncoder, ids, mask) -> list[torch.Tensor]:
    """Each layer's weights from need_weights=True, running the blocks by hand."""
    out = []
    positions = torch.arange(ids.shape[1])
    x = model.embed(ids) + model.pos(positions)
    for layer in model.layers:
        out.append(layer.attn(x, attention_mask=mask, need_weights=True).weights)
        x = layer(x, mask)
    return out


def no_hooks_left(model) -> bool:
    modules = attention_modules(model).values()
    points = [p for m in modules for p in (m.hook_pattern, m.hook_head_output, m.hook_query,
                                           m.hook_key, m.hook_value)]
    return (all(not p._forward_hooks and not p._forward_pre_hooks and p.heads is None
                and not p.observers and not p.active for p in points)
            and all(not m._forward_hooks and not m._forward_pre_hooks for m in modules))


@pytest.fixture
def model():
    return TinyEncoder(n_layers=3).eval()


def test_names_are_dotted_module_names(model):
    assert list(attention_modules(model)) == ["layers.0.attn", "layers.1.attn", "layers.2.attn"]


def test_exported_from_package():
    assert attnlab.capture is capture


@torch.no_grad()
def test_all_heads_equal_need_weights(model):
    ids, mask = tiny_batch()
    expected = reference_weights(model, ids, mask)
    with capture(model) as cap:
        model(ids, mask)
    assert cap.names == list(attention_modules(model))
    for i, ref in enumerate(expected):
        assert cap[i].shape == (3, 4, 7, 7)
        torch.testing.assert_close(cap[i], ref)
        assert not cap[i].requires_grad
    assert cap.stack().shape == (3, 3, 4, 7, 7)
    assert no_hooks_left(model)


@torch.no_grad()
@pytest.mark.parametrize("layers,heads", [([1], [2]), ([0, "layers.2.attn"], [3, 0]), (-1, 1)])
def test_selected_layers_and_heads(model, layers, heads):
    ids, mask = tiny_batch()
    expected = reference_weights(model, ids, mask)
    with capture(model, layers=layers, heads=heads) as cap:
        model(ids, mask)
    layer_list = [layers] if isinstance(layers, int) else layers
    head_list = [heads] if isinstance(heads, int) else heads
    names = list(attention_modules(model))
    assert len(cap) == len(layer_list)
    for layer in layer_list:
        index = names.index(layer) if isinstance(layer, str) else layer
        torch.testing.assert_close(cap[names[index]], expected[index][:, head_list])


def test_hooks_removed_after_exception(model):
    ids, mask = tiny_batch()
    with pytest.raises(RuntimeError, match="boom"):
        with capture(model, heads=[1]):
            model(ids, mask)
            raise RuntimeError("boom")
    assert no_hooks_left(model)


@torch.no_grad()
def test_nested_captures_compose(model):
    ids, mask = tiny_batch()
    expected = reference_weights(model, ids, mask)
    with capture(model, heads=[2]) as outer:
        with capture(model, layers=[0], heads=[0, 2]) as inner:
            with capture(model, layers=[1]) as all_heads:
                model(ids, mask)
            torch.testing.assert_close(all_heads[0], expected[1])
            model(ids, mask)
        torch.testing.assert_close(inner[0], expected[0][:, [0, 2]])
        assert attention_modules(model)["layers.0.attn"].hook_pattern.heads == [2]
        model(ids, mask)
    for i in range(3):
        torch.testing.assert_close(outer[i], expected[i][:, [2]])
    assert no_hooks_left(model)


@torch.no_grad()
def test_fused_path_outside_capture_and_for_unobserved_heads(model, monkeypatch):
    calls = []
    original = multihead.scaled_dot_product_attention

    def spy(q, k, v, mask=None, **kw):
        calls.append((q.shape[1], kw.get("need_weights", False)))
        return original(q, k, v, mask, **kw)

    monkeypatch.setattr(multihead, "scaled_dot_product_attention", spy)
    ids, mask = tiny_batch()
    with capture(model, layers=[1], heads=[3]):
        model(ids, mask)
    # every layer runs all 4 heads fused; layer 1 also runs head 3 alone explicitly
    assert calls == [(4, False), (4, False), (1, True), (4, False)]
    calls.clear()
    model(ids, mask)
    assert calls == [(4, False)] * 3


def test_tokens_carried(model):
    from tokenizers import Encoding  # noqa: F401  (the type capture() accepts)

    with capture(model, tokens=[["[CLS]", "a"], ["[CLS]", "b"]]) as cap:
        pass
    assert cap.tokens == [["[CLS]", "a"], ["[CLS]", "b"]]
    with capture(model, tokens=["[CLS]", "hi"]) as cap:
        pass
    assert cap.tokens == [["[CLS]", "hi"]]


def test_bad_arguments(model):
    with pytest.raises(ValueError, match="no MultiHeadAttention"):
        with capture(torch.nn.Linear(2, 2)):
            pass
    with pytest.raises(ValueError, match="out of range"):
        with capture(model, layers=[3]):
            pass
    with pytest.raises(ValueError, match="no MultiHeadAttention named 'layers.9.attn'"):
        with capture(model, layers=["layers.9.attn"]):
            pass
    with pytest.raises(ValueError, match=r"heads must be integers in \[0, 4\)"):
        with capture(model, heads=[4]):
            pass
    with pytest.raises(TypeError, match="torch.nn.Module"):
        with capture("model"):
            pass
    assert no_hooks_left(model)


def test_missing_layer_message(model):
    with capture(model, layers=[0]) as cap:
        pass
    with pytest.raises(KeyError, match="no weights captured"):
        cap[0]


# --- head gates -------------------------------------------------------------------------------

def test_gates_equal_head_mask():
    mha = attnlab.MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 5, 16)
    gate = torch.tensor([1.0, 0.0, 0.5, 1.0])
    with head_gates(mha, {"": gate}):
        gated = mha(x).output
    torch.testing.assert_close(gated, mha(x, head_mask=gate).output)
    given = torch.tensor([[0.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
    with head_gates(mha, {"": gate}):
        both = mha(x, head_mask=given).output
    torch.testing.assert_close(both, mha(x, head_mask=given * gate).output)
    assert not mha._forward_pre_hooks


def test_gates_created_require_grad(model):
    ids, mask = tiny_batch()
    with head_gates(model) as gates:
        model(ids, mask).sum().backward()
    assert list(gates) == list(attention_modules(model))
    assert all(g.shape == (3, 4) and g.grad is not None for g in gates.values())
    assert all(not m._forward_pre_hooks for m in attention_modules(model).values())


def test_gates_bad_shape(model):
    with pytest.raises(ValueError, match="must end in H = 4"):
        with head_gates(model, {"layers.0.attn": torch.ones(3)}):
            pass


def test_gates_bitwise_equal_head_mask():
    mha = attnlab.MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 5, 16)
    for gate in (torch.tensor([1.0, 0.0, 0.3, 1.7]), torch.rand(2, 4)):
        with torch.no_grad(), head_gates(mha, {"": gate}):
            gated = mha(x).output
        assert torch.equal(gated, mha(x, head_mask=gate).output)
    with head_gates(mha) as gates:
        ones = mha(x).output
    assert torch.equal(ones, mha(x).output)
    assert gates[""].shape == (2, 4) and gates[""].dtype == x.dtype and gates[""].requires_grad


def test_created_gates_take_the_query_dtype_under_autocast(model):
    ids, mask = tiny_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16), head_gates(model) as gates:
        logits = model(ids, mask)
    logits.float().sum().backward()
    assert all(g.dtype == torch.float32 and g.grad is not None for g in gates.values())
    assert no_hooks_left(model)


def test_gates_hook_only_the_gated_modules(model):
    with head_gates(model, {"layers.1.attn": torch.ones(4)}):
        active = {n: m.hook_head_output.active for n, m in attention_modules(model).items()}
        assert not any(m.hook_pattern.active for m in attention_modules(model).values())
    assert active == {"layers.0.attn": False, "layers.1.attn": True, "layers.2.attn": False}
    assert no_hooks_left(model)


def test_gate_with_other_batch_size(model):
    ids, mask = tiny_batch()
    with pytest.raises(ValueError, match=r"must have shape \(H,\) = \(4,\) or \(B, H\) = \(3, 4\)"):
        with head_gates(model, {"layers.0.attn": torch.ones(2, 4)}):
            model(ids, mask)
    assert no_hooks_left(model)


def test_gate_hooks_removed_after_exception(model):
    ids, mask = tiny_batch()
    with pytest.raises(RuntimeError, match="boom"):
        with head_gates(model), capture(model, heads=[0]):
            model(ids, mask)
            raise RuntimeError("boom")
    assert no_hooks_left(model)


@torch.no_grad()
def test_capture_inside_head_gates(model):
    ids, mask = tiny_batch()
    plain = reference_weights(model, ids, mask)
    gate = torch.tensor([1.0, 0.0, 0.5, 1.0])
    with head_gates(model, {"layers.1.attn": gate}):
        gated_logits = model(ids, mask)
        expected = reference_weights(model, ids, mask)  # layer 2 sees layer 1's gated output
        with capture(model) as cap, capture(model, layers=[2], heads=[1]) as one:
            logits = model(ids, mask)
        torch.testing.assert_close(logits, gated_logits)  # observing keeps the gates on
    assert not torch.allclose(logits, model(ids, mask))
    for i in range(3):
        torch.testing.assert_close(cap[i], expected[i])
    torch.testing.assert_close(cap[0], plain[0])
    torch.testing.assert_close(cap[1], plain[1])
    assert not torch.allclose(cap[2], plain[2])
    torch.testing.assert_close(one[0], expected[2][:, [1]])
    assert no_hooks_left(model)


def test_capture_inside_created_gates_keeps_gradients(model):
    ids, mask = tiny_batch()
    with head_gates(model) as gates, capture(model, heads=[3]) as cap:
        model(ids, mask).sum().backward()
    assert all(g.grad is not None and g.grad.abs().sum() > 0 for g in gates.values())
    assert all(not w.requires_grad and w.shape == (3, 1, 7, 7) for w in cap.weights.values())
    assert no_hooks_left(model)


# --- hook points ------------------------------------------------------------------------------

def test_hook_points_have_dotted_names(model):
    points = name_hook_points(model)
    assert list(points)[:2] == ["layers.0.attn.hook_pattern", "layers.0.attn.hook_head_output"]
    assert all(p.name == n for n, p in points.items())
    name_hook_points(model.layers[0])  # names are assigned once
    assert model.layers[0].attn.hook_pattern.name == "layers.0.attn.hook_pattern"
    with capture(model, layers=[2]) as cap:
        pass
    assert cap.hook_names == ["layers.2.attn.hook_pattern"]
    assert name_hook_points(attnlab.MultiHeadAttention(8, 2))["hook_pattern"].name == "hook_pattern"


def test_observe_and_release_restore_the_point():
    point = attnlab.MultiHeadAttention(8, 4).hook_pattern
    assert point.heads is None and not point.active and not point.observers
    a = point.observe([3, 1, 3])
    assert point.heads == [1, 3] and not point.active  # a request without a hook calls nothing
    b = point.observe([0], hook=lambda *args: None)
    assert point.heads == [0, 1, 3] and point.active
    with point.observe(None):
        assert point.heads is None
    assert point.heads == [0, 1, 3]
    a.release()
    assert point.heads == [0] and point.observers == (b,)
    b.release()
    b.release()  # twice is a no-op
    assert point.heads is None and not point.active and not point.observers
    assert not point._forward_hooks
    with pytest.raises(AttributeError):
        point.heads = [1]


@pytest.mark.parametrize("module", [hooks, multihead, capture_module, gates_module])
def test_no_module_level_state(module):
    state = [n for n, v in vars(module).items() if not n.startswith("__")
             and isinstance(v, (dict, list, set, weakref.WeakKeyDictionary,
                                weakref.WeakValueDictionary))]
    assert state == []


@torch.no_grad()
def test_unobserved_hook_points_are_never_called(model, monkeypatch):
    calls = []
    original = HookPoint.forward

    def spy(self, x, **context):
        calls.append(self.name)
        return original(self, x, **context)

    monkeypatch.setattr(HookPoint, "forward", spy)
    ids, mask = tiny_batch()
    model(ids, mask)
    assert calls == []
    with capture(model, layers=[1], heads=[0]):
        model(ids, mask)
    assert calls == ["layers.1.attn.hook_pattern"]
    calls.clear()
    with head_gates(model, {"layers.2.attn": torch.ones(4)}):
        model(ids, mask)
    assert calls == ["layers.2.attn.hook_head_output"]


# --- queries, keys and values (vectors=True) ------------------------------------------------

def projected(mha: attnlab.MultiHeadAttention, x: torch.Tensor, which: str) -> torch.Tensor:
    """``x W^T + b`` split into heads by hand: (B, H, L, d)."""
    proj = getattr(mha, f"{which}_proj")
    B, L, _ = x.shape
    out = x @ proj.weight.T + proj.bias  # (B, L, H*d)
    return out.view(B, L, mha.n_heads, -1).permute(0, 2, 1, 3)  # (B, H, L, d)


@torch.no_grad()
def test_vectors_equal_the_projections_and_give_back_the_weights():
    torch.manual_seed(0)
    mha = attnlab.MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    mha.double()
    padding = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with capture(mha, heads=[1, 3], vectors=True) as cap:
        _, weights = mha(x, attention_mask=padding, is_causal=True, need_weights=True)
    for which, store in (("q", cap.queries), ("k", cap.keys), ("v", cap.values)):
        torch.testing.assert_close(store[""], projected(mha, x, which)[:, [1, 3]])
    mask = cap.masks[""]  # (B, 1, L, S): causal and padding
    assert mask.shape == (2, 1, 5, 5) and mask.dtype == torch.bool
    expected = torch.ones(5, 5, dtype=torch.bool).tril() & padding.bool()[:, None, None, :]
    assert torch.equal(mask, expected)
    scores = cap.queries[""] @ cap.keys[""].transpose(-1, -2) / 2.0  # (B, h, L, S), √d_k = 2
    by_hand = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)  # (B, h, L, S)
    torch.testing.assert_close(by_hand, weights[:, [1, 3]], rtol=0, atol=1e-12)
    torch.testing.assert_close(by_hand, cap[""], rtol=0, atol=1e-12)
    assert no_hooks_left(mha)


@torch.no_grad()
def test_vectors_after_rotary_rotation():
    torch.manual_seed(0)
    rotary = attnlab.attention.positional.RotaryEmbedding(4)
    mha = attnlab.MultiHeadAttention(16, 4, rotary=rotary).eval()
    x = torch.randn(1, 6, 16)
    with capture(mha, vectors=True) as cap:
        mha(x)
    q, k = rotary(projected(mha, x, "q"), projected(mha, x, "k"))
    torch.testing.assert_close(cap.queries[""], q)
    torch.testing.assert_close(cap.keys[""], k)
    assert cap.masks[""] is None


@torch.no_grad()
def test_vectors_of_one_layer_only_and_not_without_asking(model):
    ids, mask = tiny_batch()
    with capture(model, layers=[1]) as cap:
        model(ids, mask)
    assert cap.queries == {} and cap.masks == {}
    assert not any(m.hook_query.active for m in attention_modules(model).values())
    with capture(model, layers=[1], heads=[2], vectors=True) as cap:
        model(ids, mask)
    assert list(cap.queries) == list(cap.keys) == list(cap.values) == ["layers.1.attn"]
    assert cap.queries["layers.1.attn"].shape == (3, 1, 7, 4)
    assert cap.masks["layers.1.attn"].shape == (3, 1, 7, 7)  # padding of each row
    assert no_hooks_left(model)
