"""DropConnect keep bits, bit-sliced: 32 independent keep bits to an int32 word.

Bit c of word r is the keep bit of mask entry r for example c of a group of 32 examples (the
layout :mod:`.kernels` and the eager backend of :mod:`.function` read). The rule is the one
of :func:`~dropbench.regularizers.dropout.keep_mask`: an entry is dropped when its 16-bit
uniform u is below D = 65536 p', p' = p rounded to 2**-16. The 16 bits of u are compared
with D one bit plane (one 32-bit word of random bits per mask word) at a time.

Per-example masks (:func:`hashed_keep_bits`) take their planes from a counter-based
generator: plane j of word n is a 32-bit hash of (n + key_j), with 16 keys drawn from torch's
generator per call (so ``torch.manual_seed`` fixes the masks). Unlike torch's sequential
generator, a hash of the counter can be evaluated inside one fused ``torch.compile`` loop,
16 words at a time, and gives the same bits there and eagerly. Per-batch masks (a few
thousand words) keep torch's generator (:func:`packed_keep_bits`), and the masks of before.
"""

from __future__ import annotations

import math

import torch

from dropbench.regularizers.dropout import MASK_LEVELS

PLANES = 16  # bits of the uniform u compared with D
#: Planes drawn for every word by :func:`packed_keep_bits` before only the tied words go on.
FIRST_PLANES = 8
#: Words hashed at once by the eager generator: small enough for the temporaries to stay in cache.
EAGER_WORDS = 1 << 16

# lowbias32 (C. Wellons' hash-prospector): a bijective 32-bit mixer with low avalanche bias.
# Written with int32 arithmetic, which wraps the same way in eager torch and in inductor's C++.
_MULTIPLIERS = (0x7FEB352D, 0x846CA68B - (1 << 32))
_SAME_SIZE_INT = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def drop_levels(p: float) -> int:
    """D = round(65536 p), at most 65535 (the dropout masks' resolution)."""
    return min(round(p * MASK_LEVELS), MASK_LEVELS - 1)


def plane_keys(device: torch.device | str = "cpu") -> torch.Tensor:
    """One random int32 key per bit plane, from torch's generator."""
    return torch.randint(-(2**31), 2**31, (PLANES,), dtype=torch.int32, device=device)


def _shift_right(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int32 ``x`` by ``k`` (torch's ``>>`` on int32 is arithmetic)."""
    return (x >> k) & ((1 << (32 - k)) - 1)


def _hash(x: torch.Tensor) -> torch.Tensor:
    x = x ^ _shift_right(x, 16)
    x = x * _MULTIPLIERS[0]
    x = x ^ _shift_right(x, 15)
    x = x * _MULTIPLIERS[1]
    return x ^ _shift_right(x, 16)


def keep_words(counters: torch.Tensor, keys: torch.Tensor, levels: int) -> torch.Tensor:
    """Keep words for word indices ``counters`` (int32): bit set where u >= D, lane by lane.

    u < D is decided from the least significant plane up: at a bit where D has a 1, a 0 in u
    makes u < D whatever the lower bits said; where D has a 0, a 1 makes u > D. Planes below
    D's lowest set bit cannot change the outcome and are not hashed: 1 plane for p' = 1/2,
    16 for odd D. Pure tensor code: ``torch.compile`` fuses it into one loop over the words.
    """
    lowest = (levels & -levels).bit_length() - 1
    below = None
    for key, bit in zip(keys[: PLANES - lowest], range(lowest, PLANES), strict=True):
        zero = ~_hash(counters + key)  # lanes whose bit `bit` of u is 0
        if below is None:  # D's lowest set bit: u < D on the planes so far iff u has a 0 here
            below = zero
        elif levels >> bit & 1:
            below = below | zero
        else:
            below = below & zero
    return ~below


def hashed_keep_bits(
    shape: torch.Size | tuple[int, ...],
    p: float,
    device: torch.device | str = "cpu",
    keys: torch.Tensor | None = None,
) -> tuple[torch.Tensor, float]:
    """Int32 words of ``shape`` whose 32 bits are independent keep bits (1 with probability
    1 - p'), and p', from the counter-based generator (per-example masks). Eager, a chunk of
    words at a time; ``kernels.keep_bits_kernel`` compiled gives the same words for the same
    ``keys`` (default: fresh keys from torch's generator)."""
    levels = drop_levels(p)
    n = int(torch.Size(shape).numel())
    if levels == 0:
        return torch.full(shape, -1, dtype=torch.int32, device=device), 0.0
    keys = plane_keys(device) if keys is None else keys
    words = torch.empty(n, dtype=torch.int32, device=device)
    for start in range(0, n, EAGER_WORDS):
        stop = min(start + EAGER_WORDS, n)
        counters = torch.arange(start, stop, dtype=torch.int32, device=device)
        words[start:stop] = keep_words(counters, keys, levels)
    return words.view(shape), levels / MASK_LEVELS


def packed_keep_bits(
    shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, float]:
    """The same kind of words drawn plane by plane with torch's sequential generator (per-batch
    masks: a few thousand words, where the draw is cheap and the masks stay those of before).

    The planes are compared with D most significant first, on whole words. Planes below D's
    lowest set bit are not drawn; after ``FIRST_PLANES`` planes, only the words with a lane
    still tied with D (about 12%) draw the remaining planes. Expected random bits per entry:
    1 for p = 1/2, 2 for 1/4 and 3/4, about 9 for other p (keep_mask: 16).
    """
    levels = drop_levels(p)
    if levels == 0:
        return torch.full(shape, -1, dtype=torch.int32, device=device), 0.0
    planes = PLANES - ((levels & -levels).bit_length() - 1)
    n = math.prod(shape)
    if planes == 1:  # p' = 1/2: the random bits are the keep bits
        words = torch.empty(-(-n // 2), dtype=torch.int64, device=device).random_(-(2**63), None)
        return words.view(torch.int32)[:n].view(shape), 0.5
    below, tied = _compare_planes(None, None, levels, range(min(planes, FIRST_PLANES)), n, device)
    if planes > FIRST_PLANES:
        words = tied.nonzero().squeeze(1)
        rest, _ = _compare_planes(below[words], tied[words], levels, range(FIRST_PLANES, planes))
        below[words] = rest
    return below.bitwise_not_().view(shape), levels / MASK_LEVELS


def _compare_planes(below, tied, levels: int, planes: range, n: int = 0, device=None):
    """Compare random bit planes ``planes`` (0 = most significant) with D's bits and return the
    updated (below, tied): ``below`` gains the lanes that fall below D, ``tied`` loses every lane
    that is decided. ``None, None``: the first plane, every lane of ``n`` words still tied."""
    n = n if below is None else below.numel()
    device = device if below is None else below.device
    scratch = None
    for j in planes:
        if scratch is None:
            scratch = torch.empty(-(-n // 2), dtype=torch.int64, device=device)
        not_bit = scratch.random_(-(2**63), None).view(torch.int32)[:n].bitwise_not_()
        one = levels >> (15 - j) & 1
        if tied is None:  # the first plane decides below D (a 0 where D has a 1) or above
            below, tied = (not_bit, ~not_bit) if one else (torch.zeros_like(not_bit), not_bit)
            scratch = None  # now part of the state
        elif one:  # D has a 1: a tied lane with a 0 falls below D
            falls = not_bit.bitwise_and_(tied)
            below.bitwise_or_(falls)
            tied.bitwise_xor_(falls)
        else:  # D has a 0: a tied lane with a 1 rises above D
            tied.bitwise_and_(not_bit)
    return below, tied


def lane_masks(words: torch.Tensor, lanes: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``out[c]`` is all ones (-1) where bit ``lanes[c]`` of ``words`` is set, else 0 (int32).

    Shifting the bit to the sign position and back with an arithmetic shift smears it over
    the word; ANDing the result with a float's bits keeps or zeroes that float exactly.
    """
    shifts = (31 - lanes).view(-1, *[1] * words.dim())
    out = torch.bitwise_left_shift(words, shifts, out=out)
    return out.bitwise_right_shift_(31)


def float_bits(t: torch.Tensor) -> torch.Tensor:
    """The float tensor ``t`` viewed as integers of the same width (for bitwise masking)."""
    return t.view(_SAME_SIZE_INT[t.element_size()])


def apply_masks(masks: torch.Tensor, values: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``values`` where ``masks`` is all ones, 0 where it is 0 (bitwise, so exact); ``out``
    (int32, may be ``masks`` itself) is used for 4-byte floats."""
    if values.element_size() != 4:
        masks, out = masks.to(_SAME_SIZE_INT[values.element_size()]), None
    return torch.bitwise_and(masks, float_bits(values), out=out).view(values.dtype)


def same_size_int(dtype_size: int) -> torch.dtype:
    return _SAME_SIZE_INT[dtype_size]
