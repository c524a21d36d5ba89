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

``run`` returns a :class:`RealModelResult`: the model and prompts in its config, and in its metrics
Eq. 17's curve and one :class:`PromptSet` row per set with all four measurements
(``result.metrics.prompt_set("mathematics").cost_of_k[4].own_ppl``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import time
from dataclasses import dataclass
from importlib import resources

import torch

from .. import decoders, decoding, hub, zipf
from ..clean_distribution import clean_log_probs, clean_probs
from ..device import pick_device
from .generation_order import order_statistics, unigram_entropy
from .result import Environment, ExperimentResult
from .small_masked_lm import BOOK_FOLDER, LARGER_FOLDER

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
    tokens_per_step: tuple[int, ...]  # k values for the cost of k
    block_length: int  # semi-AR block for the cost of k, in tokens
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


@dataclass(frozen=True)
class ZipfParameters:
    """The Zipf law Eq. 17 is drawn with."""
    s: float  # the exponent
    N: int  # the vocabulary size
    source: str  # where the values come from


@dataclass(frozen=True)
class Config:
    """Every setting that produced a result: the scale, the model as loaded, the prompts."""
    scale: Scale  # prompts, masks, decodings
    model: str  # the hub id or folder measured (the package's own model without a machine's path)
    revision: str | None  # the hub revision asked for; None: the default branch
    family: str  # the hub family the model was loaded as (hub.FAMILIES)
    mask_id: int  # the model's [MASK] token
    vocab_size: int  # V of its logits
    dtype: str  # the dtype it computed in ("float64", "bfloat16", ...)
    transformers: str  # the version of transformers that loaded it
    eq17: ZipfParameters  # the Zipf law of the Eq. 17 curve beside Figure 3
    frequent_tokens: tuple[str, ...]  # what counts as homogenised (FREQUENT and the model's special tokens)
    frequent_ids: tuple[int, ...]  # their ids in this model's vocabulary
    prompt_sets: dict[str, tuple[str, ...]]  # set -> the prompts measured for Figure 3 and Table 1; the
    # generation order and the cost of k decode the first order_prompts and quality_prompts of them


@dataclass(frozen=True)
class Observations:
    """Observations 1-3 read off one mean-top-probability curve over n = 1, ..., M masks (``observations``).
    Values are probabilities, positions are distances n from the prompt."""
    top_at_1: float  # the value at n = 1
    fall_first_15: float  # the value at n = 1 minus the value at n = min(15, M)
    floor: float  # the lowest value
    floor_at_n: int  # where it lies
    last_5_above_floor: float  # the mean of the last 5 values minus the floor (a height, not a change)
    peak_after_floor: float | None  # the highest value after the floor; None where the floor is the last value
    peak_after_floor_at_n: int | None  # where it lies
    top_at_end: float  # the value at the last mask, n = M


@dataclass(frozen=True)
class FirstPrompt:
    """Table 1: the argmax token of every mask after a set's first prompt, all predicted at once."""
    prompt: str
    argmax_tokens: tuple[str, ...]  # the text of the argmax token at n = 1, ..., M


@dataclass(frozen=True)
class GreedyOrder:
    """How left to right greedy confidence decoding is, one token per step (averaged over prompts)."""
    leftmost_share: float  # share of steps that took the leftmost mask
    rightmost_share: float  # share of steps that took the rightmost mask
    spearman_position_vs_step: float  # rank correlation of position and decoding step (1: left to right)
    prompts: int  # prompts decoded


@dataclass(frozen=True)
class CostOfK:
    """Sampled semi-AR decoding with k tokens per step, measured by the model itself."""
    own_ppl: float  # exp of the model's own left-to-right NLL per generated token (``own_nll``)
    entropy: float  # unigram entropy of the generated tokens, in nats
    nfe: int  # denoiser calls per sequence


@dataclass(frozen=True)
class PromptSet:
    """Everything measured on one prompt set."""
    name: str  # the set (a key of ``prompt_sets()``)
    prompts: int  # prompts measured for Figure 3 and Table 1
    mean_top_by_n: tuple[float, ...]  # Figure 3: mean top probability over the clean tokens at n = 1, ..., M
    observations: Observations  # read off mean_top_by_n
    homogenised_share_far: float  # share of far masks (n > far_from) whose argmax is a frequent token
    table_1: FirstPrompt  # the argmax tokens after the set's first prompt
    generation_order: GreedyOrder  # greedy confidence decoding, one token per step
    cost_of_k: dict[int, CostOfK]  # k -> sampled decoding with k tokens per step

    @property
    def last_5_fall(self) -> float:
        """The value 5 masks before the end minus the value at the last mask (n = M - 4 and n = M)."""
        return self.mean_top_by_n[-5] - self.mean_top_by_n[-1]


@dataclass(frozen=True)
class Metrics:
    """Figure 3 beside Eq. 17, Table 1, generation order and the cost of k, one row per prompt set."""
    eq17_paper_parameters: tuple[float, ...]  # Eq. 17's bound at n = 1, ..., M with the paper's s and N
    sets: tuple[PromptSet, ...]  # in the order of prompt_sets()

    def prompt_set(self, name: str) -> PromptSet:
        """The measurements of the set ``name``."""
        names = [s.name for s in self.sets]
        if name not in names:
            raise ValueError(f"name must be one of {names}; got {name!r}")
        return self.sets[names.index(name)]

    def below_bound_from(self) -> int | None:
        """The least distance n from which every set's curve lies below Eq. 17 at every n' >= n; None
        where no such n exists (some set ends at or above the bound)."""
        bound = self.eq17_paper_parameters
        below = [n for n in range(1, len(bound) + 1)
                 if all(all(c < b for c, b in zip(s.mean_top_by_n[n - 1:], bound[n - 1:], strict=True))
                        for s in self.sets)]
        return min(below, default=None)


@dataclass(frozen=True)
class RealModelResult(ExperimentResult):
    """What ``run`` measured on one model, with the settings and environment that produced it."""
    EXPERIMENT = "real_model"
    config: Config
    metrics: Metrics
    curves: None  # nothing is trained: no curves
    environment: Environment


def prompt_sets() -> dict[str, list[str]]:
    """The four prompt sets (name -> 100 prompts)."""
    text = resources.files("maskdiff_tutor").joinpath("data/prompts.json").read_text(encoding="utf-8")
    return json.loads(text)["sets"]


def prompts_of(name: str) -> list[str]:
    """The 100 prompts of the set ``name`` (one of ``prompt_sets()``)."""
    sets = prompt_sets()
    if name not in sets:
        raise ValueError(f"name must be one of {list(sets)}; got {name!r}")
    return sets[name]


def load(scale: str = "ci", model: str | None = None, device: str | torch.device | None = None,
         dtype: torch.dtype | None = None, revision: str | None = None,
         trust_remote_code: bool = False) -> hub.HubModel:
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
        dtype: torch.dtype | None = None) -> RealModelResult:
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
    generator = torch.Generator(device=lm.device).manual_seed(seed) if lm.device.type == "cuda" \
        else torch.Generator().manual_seed(seed)
    sets = {kind: prompts[: cfg.prompts_per_set] for kind, prompts in prompt_sets().items()}
    config = _config(lm, cfg, sets)
    frequent = torch.tensor(config.frequent_ids)
    bar = _bar(progress, sum(len(p) for p in sets.values()), "Figure 3")
    at_once = {}  # set -> (prompt ids, mean top probability (M,), argmax (P, M)), for Figure 3 and Table 1
    for kind, prompts in sets.items():
        ids = [lm.prompt_ids(p) for p in prompts]
        tops, argmaxes = all_at_once(lm, ids, cfg.masks, cfg.batch_size, bar)
        at_once[kind] = ids, tops.mean(0), argmaxes
    if bar is not None:
        bar.close()
    rows = []
    for kind, (ids, curve, argmaxes) in at_once.items():
        far = argmaxes[:, cfg.far_from:]  # (P, M - far_from)
        rows.append(PromptSet(kind, len(ids), tuple(curve.tolist()), observations(curve),
                              homogenised_share_far=float(torch.isin(far, frequent).double().mean()),
                              table_1=FirstPrompt(sets[kind][0], tuple(lm.decode(argmaxes[0]))),
                              generation_order=greedy_order(lm, ids[: cfg.order_prompts], cfg.masks),
                              cost_of_k=cost_of_k(lm, ids[: cfg.quality_prompts], cfg, generator)))
    bound = zipf.top_probability_bound(list(range(1, cfg.masks + 1)), *PAPER_ZIPF)  # Eq. 17 at n = 1, ..., M
    metrics = Metrics(tuple(bound.tolist()), tuple(rows))
    return RealModelResult(scale, seed, config, metrics, None, Environment.now(lm.device, started))


def _recorded_name(model: str) -> str:
    """A model's name as the record keeps it: a hub id as it is, the package's own models without a
    machine's path."""
    for folder in (BOOK_FOLDER, LARGER_FOLDER):
        if pathlib.Path(model).resolve() == folder.resolve():
            return f"maskdiff_tutor/book_models/{folder.name} (stored with the package)"
    return model


def _config(lm: hub.HubModel, cfg: Scale, sets: dict[str, list[str]]) -> Config:
    """The settings of a run of ``cfg`` on ``lm`` with the prompts ``sets``."""
    import transformers

    cfg = dataclasses.replace(cfg, model=_recorded_name(cfg.model))
    return Config(cfg, _recorded_name(lm.name), lm.revision, lm.family, lm.mask_id, lm.vocab_size,
                  dtype=str(lm.dtype).removeprefix("torch."), transformers=transformers.__version__,
                  eq17=ZipfParameters(*PAPER_ZIPF, source="the paper's Section 3.2.4"),
                  frequent_tokens=(*FREQUENT, "the model's end-of-text, separator and padding ids"),
                  frequent_ids=tuple(sorted(frequent_ids(lm))),
                  prompt_sets={kind: tuple(prompts) for kind, prompts in sets.items()})


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


def observations(curve: torch.Tensor) -> Observations:
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
    return Observations(top_at_1=float(curve[0]), fall_first_15=float(curve[0] - curve[first]), floor=floor,
                        floor_at_n=where, last_5_above_floor=float(curve[-5:].mean() - floor),
                        peak_after_floor=float(after.max()) if len(after) else None,
                        peak_after_floor_at_n=where + 1 + int(after.argmax()) if len(after) else None,
                        top_at_end=float(curve[-1]))


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
        x = torch.cat([prompt, torch.full((len(members), masks), lm.mask_id, device=prompt.device)], dim=1)
        probs = clean_probs(_forward(lm, x, size)[:, prompt.shape[1]:].double(), lm.mask_id)  # (b, masks, V)
        top = probs.max(-1)
        for row, i in enumerate(members):
            tops[i], argmaxes[i] = top.values[row].cpu(), top.indices[row].cpu()
        if bar is not None:
            bar.update(len(members))
    return torch.stack(tops), torch.stack(argmaxes)


def greedy_order(lm: hub.HubModel, ids: list, masks: int) -> GreedyOrder:
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
    return GreedyOrder(**{key: sum(n * s[key] for n, s in rows) / total for key in rows[0][1]}, prompts=total)


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


def cost_of_k(lm: hub.HubModel, ids: list, cfg: Scale, generator: torch.Generator) -> dict[int, CostOfK]:
    """For each k: sampled semi-AR decoding with k tokens per step; the model's own perplexity of
    the result and the unigram entropy (nats) of the generated tokens."""
    costs = {}
    for k in cfg.tokens_per_step:
        nll, generated, nfe = [], [], 0
        for members in _groups(ids, len(ids)):
            prompt = torch.cat([ids[i] for i in members]).to(lm.device)
            out = decoders.generate(lm, prompt, cfg.masks, lm.mask_id, tokens_per_step=k,
                                    block_length=cfg.block_length, temperature=1.0, generator=generator)
            nll.append(own_nll(lm, out.tokens, prompt.shape[1], cfg.batch_size))
            generated.append(out.tokens[:, prompt.shape[1]:].flatten().cpu())
            nfe = out.nfe
        # own PPL = exp(mean own NLL per generated token)
        costs[k] = CostOfK(own_ppl=math.exp(float(torch.cat(nll).mean())),
                           entropy=unigram_entropy(torch.cat(generated), lm.vocab_size), nfe=nfe)
    return costs


def _bar(enabled: bool, total: int, description: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="prompt")
