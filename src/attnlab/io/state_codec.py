"""A training loop's nested state (dicts, lists and tuples of tensors, arrays and scalars) as
JSON plus named tensors, so that a checkpoint holds it in safetensors and JSON, without pickle.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

__all__ = ["decode_state", "encode_state"]


def encode_state(obj: Any, tensors: dict[str, Tensor], prefix: str = "state") -> Any:
    """Turn nested dicts/lists/tuples of tensors, arrays and scalars into JSON.

    Tensors are moved into ``tensors`` (a name -> tensor dict for safetensors) and replaced by
    ``{"__tensor__": name}``; tuples, NumPy arrays and dicts with non-string keys are tagged so
    :func:`decode_state` restores them exactly.
    """
    if isinstance(obj, Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: encode_state(v, tensors, f"{prefix}.{k}") for k, v in obj.items()}
        return {
            "__items__": [
                [
                    encode_state(k, tensors, f"{prefix}.key{i}"),
                    encode_state(v, tensors, f"{prefix}.{i}"),
                ]
                for i, (k, v) in enumerate(obj.items())
            ]
        }
    if isinstance(obj, tuple):
        return {"__tuple__": [encode_state(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode_state(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint state (at {prefix})")


def decode_state(obj: Any, tensors: dict[str, Tensor]) -> Any:
    """Inverse of :func:`encode_state`."""
    if isinstance(obj, list):
        return [decode_state(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__ndarray__" in obj:
        return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
    if "__tuple__" in obj:
        return tuple(decode_state(v, tensors) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {decode_state(k, tensors): decode_state(v, tensors) for k, v in obj["__items__"]}
    return {k: decode_state(v, tensors) for k, v in obj.items()}

