"""Pictures: panels and labels follow the tensors; images hold the weights; PNGs are written."""

from __future__ import annotations

import pytest
import torch

from attnlab.inspect.pictures import head_grid, heatmap, relevance_plot


def test_heatmap_shows_weights_and_tokens(tmp_path):
    w = torch.softmax(torch.randn(3, 4), -1)
    fig = heatmap(w, ["a", "b", "$x"], ["k1", "k2", "k3", "k4"], title="layer 0 head 1")
    ax = fig.axes[0]
    assert ax.images[0].get_array().shape == (3, 4)
    assert (abs(ax.images[0].get_array() - w.numpy()) < 1e-6).all()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", r"\$x"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["k1", "k2", "k3", "k4"]
    fig.savefig(tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("n_heads,panels", [(1, 1), (4, 4), (12, 12), (5, 5)])
def test_grid_has_one_panel_per_head(n_heads, panels, tmp_path):
    w = torch.softmax(torch.randn(n_heads, 6, 6), -1)
    fig = head_grid(w, [f"t{i}" for i in range(6)], layer=2)
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == panels
    assert [ax.get_title() for ax in image_axes] == [f"head {h}" for h in range(n_heads)]
    assert (abs(image_axes[-1].images[0].get_array() - w[-1].numpy()) < 1e-6).all()
    fig.savefig(tmp_path / "g.png")


def test_relevance_plot_bars(tmp_path):
    r = torch.tensor([0.5, 0.3, 0.2])
    fig = relevance_plot(["[CLS]", "good", "[SEP]"], r)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == pytest.approx([0.5, 0.3, 0.2])
    fig.savefig(tmp_path / "r.png")


def test_shape_mismatch_messages():
    with pytest.raises(ValueError, match=r"\(L, S\) = \(2, 2\)"):
        heatmap(torch.rand(3, 3), ["a", "b"])
    with pytest.raises(ValueError, match=r"\(H, L, S\)"):
        head_grid(torch.rand(3, 3), ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"\(L,\) = \(2,\)"):
        relevance_plot(["a", "b"], torch.rand(3))
