"""A Transformer encoder layer and stack built on :class:`~attnlab.attention.MultiHeadAttention`.

Each layer is self-attention then a position-wise feed-forward network, each wrapped in
dropout, a residual connection and layer normalisation — before the sub-layer (pre-norm,
``norm_first=True``, stable without warm-up tricks) or after it (post-norm, the original
Transformer and BERT).

Legend: ``B`` batch, ``T`` sequence length, ``D`` ``d_model``, ``F`` ``d_ff``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.attention.multihead import MultiHeadAttention

__all__ = ["ACTIVATIONS", "EncoderLayer", "FeedForward", "LayerStack", "TransformerEncoder"]

# The feed-forward non-linearities, by name: exact GELU (BERT's), ReLU (torch.nn.Transformer's
# default and the original Transformer's) or SiLU, alias swish (Marian's).
ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "silu": F.silu, "swish": F.silu}


class FeedForward(nn.Module):
    """``Linear(D, F) -> activation -> Dropout -> Linear(F, D)``, applied to each position;
    ``activation`` is a name in :data:`ACTIVATIONS`."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0,
                 activation: str = "gelu") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got "
                             f"{activation!r}")
        self.up = nn.Linear(d_model, d_ff)
        self.down = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        hidden = ACTIVATIONS[self.activation](self.up(x))  # (B, T, F)
        return self.down(self.dropout(hidden))  # (B, T, D)


class EncoderLayer(nn.Module):
    """Self-attention and feed-forward sub-layers with residuals and layer norms.

    Args:
        d_model: model size ``D``.
        n_heads: attention heads ``H``.
        d_ff: hidden size ``F`` of the feed-forward network.
        dropout: dropout on each sub-layer's output and inside the feed-forward network.
        attn_dropout: dropout on the attention weights.
        activation: the feed-forward non-linearity, ``"gelu"`` or ``"relu"``.
        norm_first: pre-norm (``x + f(norm(x))``) if ``True``, else post-norm
            (``norm(x + f(x))``).
        rotary: optional rotary embedding passed to the attention (``RotaryEmbedding(d_k)``).

    Shape:
        x ``(B, T, D)``, attention_mask ``(B, T)`` (1 = token, 0 = padding) -> ``(B, T, D)``.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        *,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        activation: str = "gelu",
        norm_first: bool = True,
        rotary: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(d_model, n_heads, dropout=attn_dropout, rotary=rotary)
        self.ff = FeedForward(d_model, d_ff, dropout, activation)
        self.attn_norm = nn.LayerNorm(d_model)
        self.ff_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        if self.norm_first:
            x = x + self._attend(self.attn_norm(x), attention_mask)  # (B, T, D)
            return x + self.dropout(self.ff(self.ff_norm(x)))  # (B, T, D)
        x = self.attn_norm(x + self._attend(x, attention_mask))  # (B, T, D)
        return self.ff_norm(x + self.dropout(self.ff(x)))  # (B, T, D)

    def _attend(self, x: Tensor, attention_mask: Tensor | None) -> Tensor:
        return self.dropout(self.attn(x, attention_mask=attention_mask).output)  # (B, T, D)

    @classmethod
    def from_torch(cls, layer: nn.TransformerEncoderLayer) -> EncoderLayer:
        """A copy of a ``torch.nn.TransformerEncoderLayer`` (ReLU or GELU, biases, eps 1e-5)."""
        activation = check_torch_layer(layer, (layer.norm1, layer.norm2))
        d_model, d_ff = layer.linear1.in_features, layer.linear1.out_features
        new = cls(d_model, layer.self_attn.num_heads, d_ff, dropout=layer.dropout.p,
                  attn_dropout=layer.self_attn.dropout, activation=activation,
                  norm_first=layer.norm_first)
        new.attn = MultiHeadAttention.from_torch(layer.self_attn)
        weight = layer.linear1.weight
        new = new.to(weight.device, weight.dtype)
        for ours, theirs in ((new.ff.up, layer.linear1), (new.ff.down, layer.linear2),
                             (new.attn_norm, layer.norm1), (new.ff_norm, layer.norm2)):
            ours.load_state_dict(theirs.state_dict())
        return new


def check_torch_layer(layer: nn.Module, norms: tuple[nn.LayerNorm, ...]) -> str:
    """The activation name of a ``torch.nn.Transformer{Encoder,Decoder}Layer``; fail unless it
    computes what ours can: ReLU or exact GELU, biases everywhere, layer norms with eps
    ``1e-5``."""
    activation = layer.activation
    if activation is F.relu or isinstance(activation, nn.ReLU):
        name = "relu"
    elif activation is F.gelu or (isinstance(activation, nn.GELU)
                                  and activation.approximate == "none"):
        name = "gelu"
    else:
        raise ValueError(f"from_torch: the layer's activation must be ReLU or exact GELU, as in "
                         f"FeedForward; got {activation!r}")
    if layer.linear1.bias is None or any(norm.bias is None for norm in norms):
        raise ValueError("from_torch: layers without biases (bias=False) are not supported")
    if any(norm.eps != 1e-5 for norm in norms):
        raise ValueError(f"from_torch: layer_norm_eps must be 1e-5 (nn.LayerNorm's default), "
                         f"got {norms[0].eps}")
    return name


class LayerStack(nn.Module):
    """``n_layers`` layers of ``layer_type`` and a final layer norm when pre-norm (pre-norm
    leaves the residual stream un-normalised; post-norm layers end normalised).

    Args:
        n_layers: number of layers; the other arguments are the layer's. One ``rotary``
            module is shared by all layers (it holds no parameters).
    """

    layer_type: type[nn.Module]

    def __init__(
        self,
        n_layers: int,
        d_model: int,
        n_heads: int,
        d_ff: int,
        *,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        activation: str = "gelu",
        norm_first: bool = True,
        rotary: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            self.layer_type(d_model, n_heads, d_ff, dropout=dropout, attn_dropout=attn_dropout,
                            activation=activation, norm_first=norm_first, rotary=rotary)
            for _ in range(n_layers)
        )
        self.final_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()


class TransformerEncoder(LayerStack):
    """``n_layers`` :class:`EncoderLayer` s, with a final layer norm when pre-norm
    (arguments: :class:`LayerStack`'s).

    Shape:
        x ``(B, T, D)``, attention_mask ``(B, T)`` -> ``(B, T, D)``.
    """

    layer_type = EncoderLayer

    def forward(self, x: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        for layer in self.layers:
            x = layer(x, attention_mask)  # (B, T, D)
        return self.final_norm(x)
