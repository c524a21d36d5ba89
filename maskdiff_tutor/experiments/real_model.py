r"""The paper's measurements on a real masked diffusion LM (Sections 3.2.4 and 3.4.1).

The paper measured LLaDA; this runs the same measurements on any model ``hub.load`` serves:

1. Figure 3: after each prompt, ``masks`` [MASK] tokens predicted at once; the top probability of
   each mask (over the clean tokens), averaged over the prompts of each set, against its distance
   n from the prompt, beside the Eq. 17 bound at the paper's :math:`s = 2.31`, :math:`N = 130000`. The quantities
   of Observations 1-3: the fall over the first 15 masks, the floor (the lowest mean top
   probability and where it lies), and the rise over the last 5 masks.
2. Table 1: the argmax token of every mask when all are predicted at once, for the first prompt
   of each set; and homogenisation, measured: the share of far masks (:math:`n > \mathtt{far\_from}`) whose
   argmax is a frequent function token ("," "." "the" "and" "of", a newline) or an end-of-text,
   separator or padding token.
3. Generation order (Section 3.4.1): greedy confidence decoding after a prompt (LLaDA at
   temperature 0), one token per step with the whole continuation as one block: the share of
   steps that take the leftmost mask, and the rank correlation of position and step.
4. The cost of k tokens per step in semi-AR blocks (sampled at temperature 1): the model's own
   one-token-per-step likelihood of what was generated (each token scored left to right, with the
   tokens after it masked), as a perplexity, beside the unigram entropy of the samples.

Prompt sets: ``prompt_sets()``, four sets of 100 written for this project after the paper's four
kinds (``maskdiff_tutor/data/prompts.json``). Defaults per scale: ``ci`` measures the small masked
LM stored with the package (``small_masked_lm.BOOK_FOLDER``) on a few prompts; ``colab`` a small
masked diffusion LM that fits a free T4; ``gpu`` LLaDA-8B-Instruct on every prompt.
"""

from __future__ import annotations

import json
import math
import pathlib
import time
from dataclasses import asdict, dataclass
from importlib import resources

import torch

from .. import decoders, decoding, hub, zipf
from ..clean_distribution import clean_log_probs, clean_probs
from ..device import pick_device
from .generation_order import order_statistics, unigram_entropy
from .result import LegacyResult as ExperimentResult, environment
from .small_masked_lm import BOOK_FOLDER

PAPER_ZIPF = (2.31, 130_000)  # the s and N the paper's Figure 3 draws Eq. 17 with
FREQUENT = (",", ".", "the", " the", "and", " and", "of", " of", "\n")  # function tokens of Table 1


@dataclass(frozen=True)
class Scale:
    """How much of the real-model experiment to run, and on which model by default."""
    model: str  # the default model (a hub id or a folder)
    prompts_per_set: int  # the first prompts of each set measured for Figure 3 and Table 1
    masks: int  # [MASK] tokens after each prompt (the paper: 128)
    batch_size: int  # sequences per forward pass (halved on running out of GPU memory)
    order_prompts: int  # prompts per set decoded greedily for the generation order
    quality_prompts: int  # prompts per set decoded for the cost of k
    tokens_per_step: tuple  # k values for the cost of k
    block_length: int  # semi-AR block for the cost of k
    far_from: int  # masks at distance n > far_from count as far (homogenisation)
    float64_on_cpu: bool = False  # measure in float64 on a CPU: the same printed numbers on every CPU


SCALES = {
    "ci": Scale(model=str(BOOK_FOLDER), prompts_per_set=8, masks=32, batch_size=16, order_prompts=2,
                quality_prompts=2, tokens_per_step=(1, 2, 4), block_length=8, far_from=8, float64_on_cpu=True),
    "colab": Scale(model="dllm-hub/ModernBERT-large-chat-v0.1", prompts_per_set=25, masks=128, batch_size=8,
                   order_prompts=5, quality_prompts=4, tokens_per_step=(1, 2, 4, 8), block_length=32, far_from=32),
    "gpu": Scale(model="GSAI-ML/LLaDA-8B-Instruct", prompts_per_set=100, masks=128, batch_size=16, order_prompts=25,
                 quality_prompts=8, tokens_per_step=(1, 2, 4, 8), block_length=32, far_from=32),
}


def prompt_sets() -> dict[str, list[str]]:
    """The four prompt sets (name -> 100 prompts)."""
    text = resources.files("maskdiff_tutor").joinpath("data/prompts.json").read_text(encoding="utf-8")
    return json.loads(text)["sets"]


def load(scale: str = "ci", model: str | None = None, device: str | torch.device | None = None,
         dtype: torch.dtype | None = None, revision: str | None = None, trust_remote_code: bool = False) -> hub.HubModel:
    """``hub.load`` of ``model`` (default: the scale's), in float64 on a CPU at the ``ci`` scale."""
    cfg = _scale(scale)
    if dtype is None and cfg.float64_on_cpu and pick_device(device).type == "cpu":
        dtype = torch.float64  # CPU kernels of other instruction sets then agree far below the printed digits
    return hub.load(cfg.model if model is None else str(model), device=device, dtype=dtype, revision=revision,
                    trust_remote_code=trust_remote_code)


def _scale(scale: str) -> Scale:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}; got {scale!r}")
    cfg = SCALES[scale]
    if cfg.block_length > cfg.masks or cfg.masks % cfg.block_length:
        raise ValueError(f"block_length {cfg.block_length} must divide masks {cfg.masks}")
    return cfg


def run(scale: str = "ci", device: str | torch.device | None = None, seed: int = 0, progress: bool = False,
        model: str | hub.HubModel | None = None, revision: str | None = None, trust_remote_code: bool = False,
        dtype: torch.dtype | None = None) -> ExperimentResult:
    """Measure ``model`` (default: the scale's); see the module docstring.

    Args:
        scale: one of ``SCALES``: how many prompts, masks and decodings.
        device, dtype, revision, trust_remote_code: for ``load`` (ignored for a loaded model).
        seed: seeds the sampled decodings.
        progress: show progress bars.
        model: a ``hub.HubModel`` already loaded, a hub id or a local folder; None for the scale's.
    """
    started, cfg = time.time(), _scale(scale)
    lm = model if isinstance(model, hub.HubModel) else load(scale, model, device, dtype, revision, trust_remote_code)
    name, revision = lm.name, lm.revision
    if pathlib.Path(name).resolve() == BOOK_FOLDER.resolve():  # no machine's path in the record
        name = "maskdiff_tutor/book_models/small_masked_lm (stored with the package)"
    generator = torch.Generator(device=lm.device).manual_seed(seed) if lm.device.type == "cuda" \
        else torch.Generator().manual_seed(seed)
    sets = {kind: prompts[: cfg.prompts_per_set] for kind, prompts in prompt_sets().items()}
    frequent = frequent_ids(lm)
    bound = zipf.top_probability_bound(list(range(1, cfg.masks + 1)), *PAPER_ZIPF)
    metrics = {"eq17_paper_parameters": bound.tolist(), "frequent_ids": sorted(frequent), "sets": {}}
    bar = _bar(progress, sum(len(p) for p in sets.values()), "Figure 3")
    for kind, prompts in sets.items():
        ids = [lm.prompt_ids(p) for p in prompts]
        tops, argmaxes = all_at_once(lm, ids, cfg.masks, cfg.batch_size, bar)
        curve = tops.mean(0)
        far = argmaxes[:, cfg.far_from:]
        metrics["sets"][kind] = {
            "mean_top_by_n": curve.tolist(),
            **observations(curve),
            "homogenised_share_far": float(torch.isin(far, torch.tensor(sorted(frequent))).double().mean()),
            "table_1_first_prompt": {"prompt": prompts[0], "argmax_tokens": lm.decode(argmaxes[0])},
            "prompts": len(prompts),
        }
    if bar is not None:
        bar.close()
    metrics["generation_order"] = {kind: greedy_order(lm, [lm.prompt_ids(p) for p in prompts[: cfg.order_prompts]],
                                                      cfg.masks) for kind, prompts in sets.items()}
    metrics["cost_of_k"] = {kind: cost_of_k(lm, [lm.prompt_ids(p) for p in prompts[: cfg.quality_prompts]], cfg,
                                            generator) for kind, prompts in sets.items()}
    import transformers

    config = {"scale": asdict(cfg), "model": name, "revision": revision, "family": lm.family, "mask_id": lm.mask_id,
              "vocab_size": lm.vocab_size, "dtype": str(lm.dtype).removeprefix("torch."),
              "eq17": {"s": PAPER_ZIPF[0], "N": PAPER_ZIPF[1], "source": "the paper's Section 3.2.4"},
              "frequent_tokens": list(FREQUENT) + ["the model's end-of-text, separator and padding ids"]}
    return ExperimentResult("real_model", scale, seed, config, metrics, {},
                            {**environment(lm.device, started), "transformers": transformers.__version__})


def frequent_ids(lm: hub.HubModel) -> set:
    """Ids of the function tokens of Table 1 (those the tokenizer writes as one token) and of the
    model's end-of-text, separator and padding tokens."""
    ids = set(lm.eos_ids)
    for text in FREQUENT:
        encoded = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(encoded) == 1:
            ids.add(int(encoded[0]))
    if lm.tokenizer.pad_token_id is not None:
        ids.add(int(lm.tokenizer.pad_token_id))
    ids.discard(lm.mask_id)
    return ids


def observations(curve: torch.Tensor) -> dict:
    r"""Observations 1-3 of a mean-top-probability curve over :math:`n = 1, \dots, M`: its value at n = 1, its
    fall from n = 1 to n = min(15, M) (the value at 1 minus the value there), its minimum (``floor``) and where
    the minimum lies (n), and how far the mean of the last 5 values lies above that minimum (a height above the
    minimum, not a change over the last 5 masks: Observation 1's rise near the end shows as a large value).
    Also the highest value after the minimum and where it lies (None where the minimum is the last value), and
    the value at the last mask, n = M: a curve that dips and climbs back shows there."""
    curve = curve.double()
    first = min(15, len(curve)) - 1
    floor, where = float(curve.min()), int(curve.argmin()) + 1
    after = curve[where:]  # n = where + 1, ..., M
    return {"top_at_1": float(curve[0]), "fall_first_15": float(curve[0] - curve[first]), "floor": floor,
            "floor_at_n": where, "last_5_above_floor": float(curve[-5:].mean() - floor),
            "peak_after_floor": float(after.max()) if len(after) else None,
            "peak_after_floor_at_n": where + 1 + int(after.argmax()) if len(after) else None,
            "top_at_end": float(curve[-1])}


def _groups(ids: list, batch_size: int):
    """Indices of prompts of equal length, at most ``batch_size`` at a time (no padding: LLaDA's
    early code ignored attention masks)."""
    by_length = {}
    for i, x in enumerate(ids):
        by_length.setdefault(x.shape[1], []).append(i)
    for members in by_length.values():
        for start in range(0, len(members), batch_size):
            yield members[start: start + batch_size]


def _forward(lm: hub.HubModel, x: torch.Tensor, batch_size: list) -> torch.Tensor:
    """``lm(x)`` in chunks of ``batch_size[0]`` rows, halving it on running out of GPU memory."""
    while True:
        try:
            return torch.cat([lm(x[i: i + batch_size[0]]) for i in range(0, len(x), batch_size[0])])
        except MemoryError:
            if batch_size[0] == 1:
                raise
            batch_size[0] //= 2


@torch.no_grad()
def all_at_once(lm: hub.HubModel, ids: list, masks: int, batch_size: int, bar=None):
    """Each prompt followed by ``masks`` masks, predicted at once: the top probability over the
    clean tokens (P, masks) and the argmax (P, masks) at each mask."""
    tops, argmaxes = [None] * len(ids), [None] * len(ids)
    size = [batch_size]
    for members in _groups(ids, batch_size):
        prompt = torch.cat([ids[i] for i in members])  # (b, p)
        x = torch.cat([prompt, torch.full((len(members), masks), lm.mask_id)], dim=1)
        probs = clean_probs(_forward(lm, x, size)[:, prompt.shape[1]:].double(), lm.mask_id)  # (b, masks, V)
        top = probs.max(-1)
        for row, i in enumerate(members):
            tops[i], argmaxes[i] = top.values[row].cpu(), top.indices[row].cpu()
        if bar is not None:
            bar.update(len(members))
    return torch.stack(tops), torch.stack(argmaxes)


def greedy_order(lm: hub.HubModel, ids: list, masks: int) -> dict:
    """Greedy confidence decoding, one token per step, the continuation as one block: how left to
    right the order is (``generation_order.order_statistics``), averaged over prompts."""
    rows = []
    for members in _groups(ids, len(ids)):
        prompt = torch.cat([ids[i] for i in members]).to(lm.device)
        out = decoders.generate(lm, prompt, masks, lm.mask_id, tokens_per_step=1, score=decoding.confidence,
                                temperature=0.0)
        stats = order_statistics(out.order.cpu(), slice(prompt.shape[1], None))
        rows.append((len(members), stats))
    total = sum(n for n, _ in rows)
    return {key: sum(n * s[key] for n, s in rows) / total for key in rows[0][1]} | {"prompts": total}


@torch.no_grad()
def own_nll(lm: hub.HubModel, tokens: torch.Tensor, start: int, batch_size: int = 16) -> torch.Tensor:
    """The model's own one-token-per-step negative log-likelihood of tokens[:, start:] (B,), in
    nats per token: each token scored with the ones before it given and the ones after it masked."""
    B, L = tokens.shape
    total = torch.zeros(B, dtype=torch.float64)
    size = [batch_size]
    for i in range(start, L):
        x = tokens.clone()
        x[:, i:] = lm.mask_id
        log_p = clean_log_probs(_forward(lm, x, size)[:, i].double(), lm.mask_id)  # (B, V)
        total += -log_p.gather(-1, tokens[:, i: i + 1].to(log_p.device)).squeeze(-1).cpu()
    return total / (L - start)


def cost_of_k(lm: hub.HubModel, ids: list, cfg: Scale, generator: torch.Generator) -> dict:
    """For each k: sampled semi-AR decoding with k tokens per step; the model's own perplexity of
    the result and the unigram entropy (nats) of the generated tokens."""
    record = {"k": list(cfg.tokens_per_step), "own_ppl": [], "entropy": [], "nfe": []}
    for k in cfg.tokens_per_step:
        nll, generated, nfe = [], [], 0
        for members in _groups(ids, len(ids)):
            prompt = torch.cat([ids[i] for i in members]).to(lm.device)
            out = decoders.generate(lm, prompt, cfg.masks, lm.mask_id, tokens_per_step=k,
                                    block_length=cfg.block_length, temperature=1.0, generator=generator)
            nll.append(own_nll(lm, out.tokens, prompt.shape[1], cfg.batch_size))
            generated.append(out.tokens[:, prompt.shape[1]:].flatten().cpu())
            nfe = out.nfe
        record["own_ppl"].append(math.exp(float(torch.cat(nll).mean())))
        record["entropy"].append(unigram_entropy(torch.cat(generated), lm.vocab_size))
        record["nfe"].append(nfe)
    return record


def _bar(enabled: bool, total: int, description: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="prompt")
