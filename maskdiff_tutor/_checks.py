"""Argument checks shared by the modules: each failure is a ValueError that names the
argument and says which values are allowed.

torch is imported by the checks of tensors only, so that the pure-numpy modules (``zipf``,
``assumptions``) can check their numbers without loading it."""

from __future__ import annotations

import functools
import math
import numbers
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# what the refusals of logits with no distribution where one is needed (decoders, NELBO estimators) begin with
NO_DISTRIBUTION = "the denoiser's logits give no distribution (NaN, +inf, or -inf for every token but the mask)"


def check_times(name: str, t) -> torch.Tensor:
    """Return ``t`` as a float64 tensor, or raise if any value lies outside [0, 1]."""
    import torch

    t = torch.as_tensor(t, dtype=torch.float64)
    if torch.isnan(t).any() or (t < 0).any() or (t > 1).any():
        bad = t[torch.isnan(t) | (t < 0) | (t > 1)].flatten()[0].item()
        raise ValueError(f"{name} must lie in [0, 1] (t = 0 is data, t = 1 is fully masked); got {bad}")
    return t


def check_time_order(s: torch.Tensor, t: torch.Tensor) -> None:
    """Raise unless s <= t elementwise (the reverse process goes from t down to s)."""
    if (s > t).any():
        raise ValueError("s must not exceed t (the reverse step goes from time t down to time s <= t)")


def check_tokens(name: str, x: torch.Tensor, vocab_size: int | None, mask_id: int, allow_mask: bool) -> None:
    """Raise unless ``x`` is a tensor of token ids in the package's one token dtype, torch.long
    (int64, what ``torch.nn.functional.one_hot``, embeddings and indexing take), with ids in
    [0, vocab_size) (no upper limit where ``vocab_size`` is None), and, where ``allow_mask`` is
    False, no mask token; and unless ``mask_id`` is a non-negative int, inside the vocabulary
    where it is known."""
    import torch

    if not isinstance(x, torch.Tensor) or x.dtype != torch.int64:
        raise ValueError(f"{name} must be a torch.long (int64) tensor of token ids; got {type(x).__name__}"
                         + (f" of dtype {x.dtype} (convert it with .long())" if isinstance(x, torch.Tensor) else ""))
    check_mask_id(mask_id, vocab_size)
    if x.numel() and x.min() < 0:
        raise ValueError(f"{name} holds negative ids; token ids are >= 0")
    if vocab_size is not None and x.numel() and x.max() >= vocab_size:
        raise ValueError(f"{name} holds ids outside [0, {vocab_size - 1}] (vocab_size = {vocab_size})")
    if not allow_mask and (x == mask_id).any():
        raise ValueError(f"{name} is clean data and must not contain the mask id {mask_id}")


def check_mask_id(mask_id: int, vocab_size: int | None = None) -> int:
    """``mask_id`` if it is an int id of the vocabulary: in [0, vocab_size), or any id >= 0 where
    ``vocab_size`` is None (not known yet). The one check of a mask id: every module calls it."""
    if isinstance(mask_id, bool) or not isinstance(mask_id, int) or mask_id < 0:
        raise ValueError(f"mask_id must be a non-negative int (the mask token's id); got {mask_id!r}")
    if vocab_size is not None and mask_id >= vocab_size:
        raise ValueError(f"mask_id must be an int in [0, {vocab_size - 1}] (vocab_size = {vocab_size}); got {mask_id}")
    return mask_id


def check_number(name: str, value, *, integer: bool = False, at_least=None, above=None, at_most=None, below=None,
                 meaning: str = "") -> int | float:
    """``value`` if it is a finite real number (an int where ``integer``; never a bool) within the
    limits given; otherwise a ``ValueError`` naming ``name``, the allowed values and ``value``,
    e.g. "eta must be a finite number in [0, 1) (the remasking probability); got 1.5".

    The one check of "a number in a range": every module calls it. ``meaning`` is a short
    explanation added in parentheses."""
    if not (_is_number(value, integer) and _within(value, at_least, above, at_most, below)):
        allowed = "an int" if integer else "a finite number"
        raise ValueError(f"{name} must be {allowed}{_limits(at_least, above, at_most, below)}"
                         f"{f' ({meaning})' if meaning else ''}; got {_shown(value)}")
    return value


def _shown(value) -> str:
    """``repr(value)``, but an int too long to read (or for Python to print) as its size."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or abs(value) < 10**30:
        return repr(value)
    digits = round(abs(value).bit_length() * math.log10(2))  # to within one digit; str() may refuse
    return f"{'minus ' if value < 0 else ''}an int of about {digits} digits"


def _is_number(value, integer: bool) -> bool:
    """An int (where ``integer``) or a finite real number; a bool is neither."""
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Integral):
        return True  # an int of any size is finite (math.isfinite would overflow converting it)
    return not integer and isinstance(value, numbers.Real) and math.isfinite(value)


def _within(value, at_least, above, at_most, below) -> bool:
    """``value`` meets every limit given (None: no limit)."""
    return ((at_least is None or value >= at_least) and (above is None or value > above)
            and (at_most is None or value <= at_most) and (below is None or value < below))


def _limits(at_least, above, at_most, below) -> str:
    """The range as the messages write it: " >= 0", " in [0, 1)", " < 1"; "" without limits."""
    low, high = (at_least, "[") if at_least is not None else (above, "(")
    top, close = (at_most, "]") if at_most is not None else (below, ")")
    if low is not None and top is not None:
        return f" in {high}{low:g}, {top:g}{close}"
    if low is not None:
        return f" {'>=' if high == '[' else '>'} {low:g}"
    if top is not None:
        return f" {'<=' if close == ']' else '<'} {top:g}"
    return ""


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    """``value`` if it is an int >= ``minimum``."""
    return check_number(name, value, integer=True, at_least=minimum)


def check_counts(name: str, values, minimum: int = 0):
    """``values`` (an int or an array-like of ints, any shape) as an int64 numpy array, if every
    value is an int >= ``minimum``; otherwise the first value that is not is named with its index,
    in the words of ``check_number``: "k[1] must be an int >= 1; got 0"."""
    import numpy as np

    array = np.asarray(values)
    integer = array.dtype.kind in "iu"
    bad = array < minimum if integer else np.ones(array.shape, dtype=bool)  # other dtypes: look at each value
    for index in np.argwhere(bad):
        where = f"{name}[{', '.join(str(i) for i in index)}]" if array.ndim else name
        value = array[tuple(index)]
        check_number(where, value.item() if isinstance(value, np.generic) else value, integer=True, at_least=minimum)
    return array.astype(np.int64)


def check_logits(logits, x: torch.Tensor, mask_id: int, vocab_size: int | None = None) -> None:
    """A denoiser's output must be logits (B, L, V) for input x (B, L): a floating-point tensor
    (float16, bfloat16, float32 or float64) on x's device, with V >= 2 (a token and the mask),
    V = ``vocab_size`` where the caller states it, and ``mask_id`` an int in [0, V). Each failure is
    one line naming what the denoiser returned and what is allowed.

    A decoder checks the logits of every call, so the path of good logits is one condition (a few
    microseconds); the messages are made only on failure."""
    import torch

    if not isinstance(logits, torch.Tensor) or logits.ndim != 3 or logits.shape[:2] != x.shape:
        raise ValueError(f"the denoiser must return logits of shape (B, L, V) with (B, L) = {tuple(x.shape)}; "
                         f"got {tuple(getattr(logits, 'shape', ()))}")
    size = logits.shape[-1]
    if (logits.dtype not in _logit_dtypes() or logits.device != x.device or size < 2
            or (vocab_size is not None and size != vocab_size) or type(mask_id) is not int or not 0 <= mask_id < size):
        check_logit_dtype(logits)
        if logits.device != x.device:
            raise ValueError(f"the denoiser returned logits on {logits.device} for tokens on {x.device}; it must "
                             f"return them on its input's device (move them with .to(x.device))")
        check_vocabulary(size, vocab_size)
        check_mask_id(mask_id, size)


@functools.cache
def _logit_dtypes() -> tuple:
    """The dtypes that logits may have, made once (torch is imported only by the checks of tensors)."""
    import torch

    return torch.float16, torch.bfloat16, torch.float32, torch.float64


def check_logit_dtype(logits: torch.Tensor) -> None:
    """Logits must be floating-point: float16, bfloat16, float32 or float64 (an integer, bool or
    complex tensor is not a distribution's logits)."""
    if logits.dtype not in _logit_dtypes():
        raise ValueError(f"the denoiser must return floating-point logits (float16, bfloat16, float32 or float64); "
                         f"got dtype {logits.dtype}")


def check_vocabulary(size: int, vocab_size: int | None = None) -> None:
    """``size``, the last dimension of a denoiser's logits, must be at least 2 (a token and the
    mask) and equal ``vocab_size`` where the caller states it (None: not stated)."""
    if size < 2:
        raise ValueError(f"the denoiser's logits must cover at least 2 ids (a token and the mask): shape (B, L, V) "
                         f"with V >= 2; got V = {size}")
    if vocab_size is not None and size != vocab_size:
        raise ValueError(f"vocab_size ({vocab_size}) must equal the size of the denoiser's vocabulary, the last "
                         f"dimension of its logits ({size})")


def check_same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}")
