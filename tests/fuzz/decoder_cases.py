"""Generated calls of every decoder of ``maskdiff_tutor.decoders``: a valid call (``CASES``), the
bad values each argument can be given (``bad_value``) and what any decoder's output must satisfy
(``check_decoded``). Used by ``test_fuzz_decoders.py``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from fuzzing import MAX_LENGTH, MAX_VOCAB
from hypothesis import strategies as st

from maskdiff_tutor import decoders, decoding

NAN, INF = float("nan"), float("inf")
SCORES = (decoding.confidence, decoding.confidence_with_mask, decoding.margin, decoding.negative_entropy,
          decoding.random_score, decoding.leftmost)
TINY = (1e-300, 1e-310, 5e-324)  # positive temperatures below which log p / T overflows to -inf
TEMPERATURES = st.sampled_from((0.0, 1.0, 0.5, 2.0, 1e-3, 1e-12, *TINY, 1e300)) | st.floats(0, 10)


@dataclass
class Case:
    """One call of ``decoders.<decoder>(denoiser, **args, generator=...)``: ``vocab`` and ``mask_id``
    are those the token ids were drawn with; ``seed`` seeds a fresh generator for each run (None:
    no generator)."""

    decoder: str
    args: dict
    vocab: int
    mask_id: int
    seed: int | None = 0

    @property
    def sequences(self) -> str:
        """The argument that holds the token ids."""
        return "prompt" if self.decoder == "generate" else "x"

    def run(self, denoiser, **changes):
        args = {**self.args, **changes}
        if self.decoder != "beam_search":
            args["generator"] = None if self.seed is None else torch.Generator().manual_seed(self.seed)
        return getattr(decoders, self.decoder)(denoiser, **args)

    def filled(self) -> torch.Tensor:
        """The sequences the decoder fills: x, or for ``generate`` the prompt and gen_length masks."""
        if self.decoder != "generate":
            return self.args["x"]
        prompt = self.args["prompt"]
        masks = torch.full((prompt.shape[0], self.args["gen_length"]), self.mask_id, dtype=torch.long)
        return torch.cat([prompt, masks], 1)


# --- token ids ----------------------------------------------------------------------------------------

@st.composite
def token_ids(draw, clean: bool = False, batch=(0, 3), length=(0, MAX_LENGTH), vocab=None, mask_id=None):
    """(vocab, mask_id, ids (B, L)); ``clean``: no mask among the ids."""
    vocab = draw(st.integers(2, MAX_VOCAB)) if vocab is None else vocab
    mask_id = draw(st.sampled_from((0, vocab - 1)) | st.integers(0, vocab - 1)) if mask_id is None else mask_id
    clean_id = st.integers(0, vocab - 2).map(lambda i: i + (i >= mask_id))
    one = clean_id if clean else st.just(mask_id) | clean_id
    b, n = draw(st.integers(*batch)), draw(st.integers(*length))
    rows = draw(st.lists(st.lists(one, min_size=n, max_size=n), min_size=b, max_size=b))
    return vocab, mask_id, torch.tensor(rows, dtype=torch.long).reshape(b, n)


def masks_per_row(x: torch.Tensor, mask_id: int) -> list[int]:
    return (x == mask_id).sum(-1).tolist()


# --- one valid call of each decoder -----------------------------------------------------------------

@st.composite
def _one_block(draw, decoder: str, **extra):
    vocab, mask_id, x = draw(token_ids())
    args = {"x": x, "mask_id": mask_id, "temperature": draw(TEMPERATURES)}
    for name, strategy in extra.items():
        args[name] = draw(strategy)
    return Case(decoder, args, vocab, mask_id, draw(st.none() | st.integers(0, 2**32 - 1)))


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def _generate(draw):
    vocab, mask_id, prompt = draw(token_ids(clean=True, length=(0, MAX_LENGTH - 1)))
    gen_length = draw(st.integers(1, MAX_LENGTH - prompt.shape[1]))
    block_length = draw(st.sampled_from(_divisors(gen_length)))
    blocks = gen_length // block_length
    args = {"prompt": prompt, "gen_length": gen_length, "mask_id": mask_id, "score": draw(st.sampled_from(SCORES)),
            "block_length": None if block_length == gen_length and draw(st.booleans()) else block_length,
            "temperature": draw(TEMPERATURES)}
    schedule = draw(st.sampled_from(("none", "tokens_per_step", "threshold", "steps")))
    if schedule == "tokens_per_step":
        args["tokens_per_step"] = draw(st.integers(1, block_length))
    elif schedule == "threshold":
        args["threshold"] = draw(st.sampled_from((1.0, 0.5, 1e-300)) | st.floats(0, 1, exclude_min=True))
    elif schedule == "steps":
        args["steps"] = blocks * draw(st.integers(1, block_length))
    return Case("generate", args, vocab, mask_id, draw(st.integers(0, 2**32 - 1)))


@st.composite
def _remasking(draw):
    vocab, mask_id, x = draw(token_ids())
    fewest = min([m for m in masks_per_row(x, mask_id) if m > 0], default=0)
    args = {"x": x, "mask_id": mask_id, "steps": draw(st.integers(1, max(fewest, 1))),
            "eta": draw(st.sampled_from((0.0, 0.5, 0.999)) | st.floats(0, 1, exclude_max=True)),
            "temperature": draw(TEMPERATURES)}
    return Case("sample_with_remasking", args, vocab, mask_id, draw(st.integers(0, 2**32 - 1)))


@st.composite
def _beam_search(draw):
    vocab, mask_id, x = draw(token_ids(batch=(1, 1)))
    masked = (x[0] == mask_id).nonzero().flatten().tolist()
    positions = draw(st.none() | st.lists(st.sampled_from(masked), unique=True) if masked else st.none())
    args = {"x": x, "mask_id": mask_id, "beam_width": draw(st.integers(1, 4)), "positions": positions}
    return Case("beam_search", args, vocab, mask_id, None)


@st.composite
def _partial_random_init(draw):
    case = draw(_one_block("sample_partial_random_init",
                           init_fraction=st.sampled_from((0.0, 0.5)) | st.floats(0, 1, exclude_max=True),
                           tokens_per_step=st.integers(1, MAX_LENGTH + 1)))
    case.args["vocab_size"] = case.vocab
    return case


@st.composite
def _gibbs(draw):
    vocab, mask_id, x = draw(token_ids())
    most = max(masks_per_row(x, mask_id), default=0)
    args = {"x": x, "mask_id": mask_id, "vocab_size": vocab, "steps": draw(st.integers(1, 20)),
            "tokens_per_step": draw(st.integers(1, max(most, 1)))}
    return Case("sample_gibbs_from_random_start", args, vocab, mask_id, draw(st.integers(0, 2**32 - 1)))


CASES = {
    "sample_all_at_once": _one_block("sample_all_at_once"),
    "sample_one_at_a_time": _one_block("sample_one_at_a_time"),
    "sample_left_to_right": _one_block("sample_left_to_right", tokens_per_step=st.integers(1, MAX_LENGTH + 1)),
    "generate": _generate(),
    "sample_with_remasking": _remasking(),
    "beam_search": _beam_search(),
    "sample_partial_random_init": _partial_random_init(),
    "sample_gibbs_from_random_start": _gibbs(),
}


def draws_only_to_sample(case: Case) -> bool:
    """The generator is used by the token draws alone, so a temperature near 0 must give the tokens
    of temperature 0 (no random score, random initialisation or remasking takes numbers from it)."""
    args = case.args
    return case.decoder in ("sample_all_at_once", "sample_left_to_right") or (
        case.decoder == "generate" and args["score"] is not decoding.random_score) or (
        case.decoder == "sample_partial_random_init" and args["init_fraction"] == 0) or (
        case.decoder == "sample_with_remasking" and args["eta"] == 0)


# --- one bad argument -------------------------------------------------------------------------------

NOT_NUMBERS = (None, "1", True, 1j)
BAD_COUNTS = (0, -1, 1.5, NAN, *NOT_NUMBERS)
BAD_ARGUMENTS = {  # decoder -> the arguments a fuzz case may give a bad value (the sequences first)
    "sample_all_at_once": ("x", "mask_id", "temperature"),
    "sample_one_at_a_time": ("x", "mask_id", "temperature"),
    "sample_left_to_right": ("x", "mask_id", "temperature", "tokens_per_step"),
    "generate": ("prompt", "mask_id", "temperature", "gen_length", "block_length", "tokens_per_step", "threshold",
                 "steps", "score"),
    "sample_with_remasking": ("x", "mask_id", "temperature", "steps", "eta"),
    "beam_search": ("x", "mask_id", "beam_width", "positions"),
    "sample_partial_random_init": ("x", "mask_id", "temperature", "vocab_size", "init_fraction", "tokens_per_step"),
    "sample_gibbs_from_random_start": ("x", "mask_id", "vocab_size", "steps", "tokens_per_step"),
}
NEEDS_THE_VOCABULARY = "outside the vocabulary"  # bad only once the logits show the vocabulary
AT_A_MASK = "at a mask"  # one mask fewer: a count of masks may be what is refused


@st.composite
def bad_value(draw, case: Case, name: str):
    """(a bad value for argument ``name`` of ``case``, a few words saying what is bad about it)."""
    if name in ("x", "prompt"):
        return draw(_bad_sequences(case, name))
    if name == "mask_id":
        value = draw(st.sampled_from((-1, case.vocab, case.vocab + 3, float(case.mask_id), True, None,
                                      str(case.mask_id))))
        return value, "outside the vocabulary" if isinstance(value, int) and value >= case.vocab else "not an id"
    if name == "vocab_size":
        others = [v for v in range(case.mask_id + 1, case.vocab + 5) if v != case.vocab]
        value = draw(st.sampled_from(others) | st.sampled_from((1, 0, -3, 2.5, True, None)))
        return value, "outside the vocabulary: not the logits'"
    values = _special_bad_values(case, name) + _GENERIC[name]
    if case.decoder == "generate" and name in ("tokens_per_step", "threshold", "steps"):
        values = [v for v in values if v is not None]  # None is generate's default: no such schedule
    return draw(st.sampled_from(values)), "bad"


_GENERIC = {
    "temperature": [NAN, INF, -INF, -1.0, -1e-310, "0.5", None, True, 1j],
    "tokens_per_step": list(BAD_COUNTS),
    "steps": list(BAD_COUNTS),
    "gen_length": list(BAD_COUNTS),
    "block_length": [0, -2, 1.5, True, "2"],
    "beam_width": list(BAD_COUNTS),
    "eta": [-0.1, 1.0, 1.5, NAN, INF, None, "0.5"],
    "init_fraction": [-0.1, 1.0, NAN, None, "0"],
    "threshold": [0.0, -0.5, 1.5, NAN, INF, True, "0.5"],
    "score": ["confidence", 1, None],
    "positions": [5, "0", [0.5]],
}


def _special_bad_values(case: Case, name: str) -> list:
    """Bad values that depend on the case: too many steps or tokens, a block length that does not divide."""
    args, x = case.args, case.args.get("x")
    if name == "steps" and case.decoder == "sample_with_remasking":
        fewest = min([m for m in masks_per_row(x, case.mask_id) if m > 0], default=0)
        return [max(fewest, 1) + 1]
    if name == "steps" and case.decoder == "generate":
        blocks = args["gen_length"] // (args["block_length"] or args["gen_length"])
        return [args["gen_length"] + blocks] + ([blocks + 1] if blocks > 1 else [])
    if name == "tokens_per_step" and case.decoder == "sample_gibbs_from_random_start":
        return [max(max(masks_per_row(x, case.mask_id), default=0), 1) + 1]
    if name == "tokens_per_step" and case.decoder == "generate":
        return [(args["block_length"] or args["gen_length"]) + 1]
    if name == "block_length":
        return [b for b in range(2, args["gen_length"] + 2) if args["gen_length"] % b][:2]
    if name == "positions":
        length = x.shape[1]
        given = (x[0] != case.mask_id).nonzero().flatten().tolist()
        return [[-1], [length]] + ([[given[0]]] if given else [])
    return []


@st.composite
def _bad_sequences(draw, case: Case, name: str):
    x = case.args[name]
    kinds = ["int32", "float", "bool", "1-d", "3-d", "list"]
    if x.numel():
        kinds += ["negative id", "outside the vocabulary"]
    if name == "prompt" and x.numel():
        kinds.append("the mask")
    if case.decoder == "beam_search":
        kinds.append("two rows")
    kind = draw(st.sampled_from(kinds))
    if kind in ("negative id", "outside the vocabulary", "the mask"):
        bad = x.clone()
        value = {"negative id": -1 - draw(st.integers(0, 3)), "outside the vocabulary": case.vocab +
                 draw(st.integers(0, 3)), "the mask": case.mask_id}[kind]
        given = (x.reshape(-1) != case.mask_id).nonzero().flatten().tolist()  # a given token, if there is one,
        where = draw(st.sampled_from(given)) if given else draw(st.integers(0, x.numel() - 1))  # so masks stay
        bad.view(-1)[where] = value
        return bad, kind if given else f"{kind}, at a mask"
    return {"int32": lambda: x.int(), "float": lambda: x.float(), "bool": lambda: x.bool(),
            "1-d": lambda: x.reshape(-1), "3-d": lambda: x[None], "list": lambda: x.tolist(),
            "two rows": lambda: x.repeat(2, 1)}[kind](), kind


# --- what every output must satisfy -----------------------------------------------------------------

def check_decoded(case: Case, out, vocab: int) -> None:
    """No mask and no id outside [0, vocab) where a decoder filled a mask, the given tokens kept,
    no NaN in a recorded score of a decoded position."""
    x, mask_id = case.filled(), case.mask_id
    if case.decoder == "beam_search":
        tokens, log_prob = out
        positions = case.args["positions"]
        asked = (x[0] == mask_id).nonzero().flatten().tolist() if positions is None else positions
        assert not math.isnan(float(log_prob)), f"beam_search returned a NaN log-probability: {out}"
        assert float(log_prob) <= 1e-9, f"beam_search returned a log-probability above 0: {out}"
        decoded = torch.zeros(x.shape[1], dtype=torch.bool)
        decoded[asked] = True
        assert torch.equal(tokens[:, ~decoded], x[:, ~decoded]), f"positions not asked for changed: {x} -> {tokens}"
        tokens, x = tokens[:, decoded], x[:, decoded]  # every one a mask of x
    else:
        assert isinstance(out, decoding.Decoded), f"{case.decoder} returned {type(out).__name__}"
        tokens = out.tokens
        if out.confidence is not None and out.order is not None:
            decoded = out.order >= 0
            assert not torch.isnan(out.confidence[decoded]).any(), f"a NaN score at a decoded position: {out}"
    assert tokens.dtype == torch.long and tokens.shape == x.shape, f"tokens {tokens.dtype} {tuple(tokens.shape)}"
    assert not (tokens == mask_id).any(), f"the mask id {mask_id} in the output: {tokens}"
    assert ((tokens >= 0) & (tokens < vocab)).all(), f"ids outside [0, {vocab}) in the output: {tokens}"
    given = x != mask_id
    assert torch.equal(tokens[given], x[given]), f"given tokens changed: {x} -> {tokens}"
