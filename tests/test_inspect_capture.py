"""capture(): weights equal need_weights=True, hooks always removed, nesting, fused path kept."""

from __future__ import annotations

import pytest
import torch

import attnlab
import attnlab.attention.multihead as multihead
from attnlab.inspect import attention_modules, capture, head_gates
from attnlab.inspect.capture import _REQUESTS
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
    points = [m.hook_pattern for m in attention_modules(model).values()]
    return all(not p._forward_hooks and p.heads is None and p not in _REQUESTS for p in points)


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
