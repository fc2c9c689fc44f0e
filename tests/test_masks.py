import math

import pytest
import torch

from attnlab import causal_mask, combine_masks, lengths_to_mask, padding_mask


def test_lengths_to_mask():
    expected = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(lengths_to_mask([3, 1, 4]), expected)
    assert lengths_to_mask([1, 2], max_len=5).shape == (2, 5)


def test_lengths_to_mask_errors():
    with pytest.raises(ValueError, match="max_len=2 is shorter than the longest length 3"):
        lengths_to_mask([3, 1], max_len=2)
    with pytest.raises(ValueError, match=r"lengths must be >= 0, got \[2, -1\]"):
        lengths_to_mask([2, -1])


def test_padding_mask_from_attention_mask():
    mask = padding_mask(torch.tensor([[1, 1, 0], [1, 0, 0]]))
    assert mask.shape == (2, 1, 1, 3) and mask.dtype == torch.bool
    assert mask[0, 0, 0].tolist() == [True, True, False]
    with pytest.raises(ValueError, match=r"attention_mask must have shape \(B, S\).*\(3,\)"):
        padding_mask(torch.ones(3))


def test_causal_mask_is_lower_triangular_top_left():
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False],
                                       [True, True, True]]
    assert causal_mask(2, 4).tolist() == [[True, False, False, False], [True, True, False, False]]


def test_combine_boolean_and_float():
    causal = causal_mask(3)
    pad = padding_mask(torch.tensor([[1, 1, 0]]))
    both = combine_masks(causal, pad, None)
    assert both.shape == (1, 1, 3, 3)
    assert both[0, 0].tolist() == [[True, False, False], [True, True, False], [True, True, False]]
    bias = torch.full((3, 3), 0.5)
    mixed = combine_masks(bias, causal)
    assert mixed[0, 0] == 0.5 and mixed[0, 1] == -math.inf
    assert combine_masks(None, None) is None
    with pytest.raises(TypeError, match="masks must be boolean or floating"):
        combine_masks(torch.ones(2, dtype=torch.long))
