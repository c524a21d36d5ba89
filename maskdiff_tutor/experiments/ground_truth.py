r"""The distance bound and parallel decoding on a language with known ground truth
(paper Sections 3.2.3-3.3: Figure 3, Table 1, Metrics 1-3, Table 2).

A Zipf Markov chain meeting Assumptions 3-4, with a few function words, is the language. A
denoiser is trained on sequences sampled from it; then, against the chain's exact answers:

- the top probability of a [MASK] at distance n after a one-token prompt: exact (:math:`P^n`), trained
  model, and the bound of Eq. 17 with the chain's own s and V; the true limit :math:`\max(\pi)`;
- the homogenisation table: which token each [MASK] predicts when all are predicted at once;
- an end-of-text variant of the chain (exact): the top probability rises again far away;
- decoding k tokens per step left to right, for :math:`k = 1, \dots, \text{all}`: the true perplexity under the
  chain of what was generated, from the exact marginals and from the trained model, beside the
  decoder's own probability (Metric 1-2 measured) and the Table 2 bound;
- random-scan Gibbs from a random start (``decoders.sample_gibbs_from_random_start``, stored
  under "random_init"): the true perplexity after as many denoiser calls as one-token-per-step
  decoding needs, and after several times more, with one and with four tokens redrawn per call;
- the paper's SEDD-inspired random initialisation (``decoders.sample_partial_random_init``) for
  several shares of initialised masks and tokens per call, exact denoiser;
- left-to-right remasking (``decoders.sample_with_remasking``, claim 10): true perplexity against
  denoiser calls for several remasking probabilities, exact denoiser.
"""

from __future__ import annotations

import math
import pathlib
import time
from dataclasses import asdict, dataclass

import torch

from .. import decoders, markov, zipf
from ..denoiser import Denoiser, DenoiserConfig
from ..device import generator_on, evaluation_dtype, pick_device
from ..forward_process import denoiser_probs
from ..train import TrainConfig, train
from . import trained_models
from .result import LegacyResult as ExperimentResult, environment


@dataclass(frozen=True)
class Scale:
    """The language, model, training and decoding settings of a scale."""
    vocab_size: int  # V, tokens of the chain (the mask is one more)
    s: float  # Zipf exponent of every row
    function_words: int  # tokens 0..f-1 at ranks 2..f+1 of every row
    seq_len: int  # L: a one-token prompt and L - 1 masks
    train_sequences: int  # sequences sampled for training
    preset: str  # denoiser size
    steps: int  # training steps
    batch_size: int  # sequences per step
    lr: float  # peak learning rate
    samples: int  # sequences generated per decoding setting
    tokens_per_step: tuple  # the k values of the parallel-decoding sweep
    random_init_sweeps: tuple = (1, 2, 4, 8)  # Gibbs from a random start: denoiser calls, in multiples of L - 1
    random_init_samples: int = 250  # sequences per random-initialisation setting (the first prompts)
    variant_samples: int = 200  # sequences per setting of the two sweeps below (the first prompts)
    init_fractions: tuple = (0.0, 0.1, 0.25, 0.5, 0.75)  # the paper's random initialisation: shares initialised
    init_tokens_per_step: tuple = (1, 4, 8)  # ... and masks decoded per call
    remask_steps: tuple = (4, 6, 8, 12, 16, 32)  # remasking: denoiser calls (NFE), at most L - 1
    remask_etas: tuple = (0.0, 0.1, 0.4)  # ... and remasking probabilities per token and step


# The settings that determine the trained weights (the rest only decide what is measured).
TRAINING_FIELDS = ("vocab_size", "s", "function_words", "seq_len", "train_sequences", "preset", "steps", "batch_size",
                   "lr")

SCALES = {
    "ci": Scale(vocab_size=32, s=2.0, function_words=2, seq_len=33, train_sequences=20_000, preset="toy",
                steps=1800, batch_size=64, lr=4e-3, samples=500, tokens_per_step=(1, 2, 4, 8, 16, 32),
                random_init_sweeps=(1, 2, 4), random_init_samples=100),
    # gpu: sized with the other experiments to run side by side in scripts/gpu-run.sh's budget of
    # under 10 minutes on one H100-class GPU (each run records its wall time)
    "gpu": Scale(vocab_size=512, s=1.1, function_words=8, seq_len=129, train_sequences=200_000, preset="small",
                 steps=6000, batch_size=256, lr=1e-3, samples=4000,
                 tokens_per_step=(1, 2, 4, 8, 16, 32, 64, 128), random_init_sweeps=(1, 2, 4),
                 random_init_samples=500, variant_samples=500, init_tokens_per_step=(1, 4, 16),
                 remask_steps=(8, 16, 32, 64, 128)),
}


def run(scale: str = "ci", device: str | torch.device | None = None, seed: int = 0, progress: bool = False,
        save_models: str | pathlib.Path | None = None, models: str | pathlib.Path | None = None) -> ExperimentResult:
    """Build the chain, train the denoiser (or load it), measure; see the module docstring.

    Args:
        scale: "ci" (the book's: a CPU minute with stored models) or "gpu" (a larger language,
            model and sweep).
        device: None for the best available, or a device name that must exist.
        seed: seeds the chain, the training data, the model and the sampling.
        progress: show the training progress bar.
        save_models: a folder to save the trained model in (``trained_models.save``).
        models: a folder of models saved by an earlier run with the same scale and seed, measured
            instead of training (``trained_models.book_folder("ground_truth")``: the book's).
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}; got {scale!r}")
    started, cfg, device = time.time(), SCALES[scale], pick_device(device)
    if max(cfg.remask_steps) > cfg.seq_len - 1:
        raise ValueError(f"remask_steps must not exceed the {cfg.seq_len - 1} masks of a sequence; got {cfg.remask_steps}")
    generator = torch.Generator().manual_seed(seed)
    P = markov.zipf_chain(cfg.vocab_size, cfg.s, generator, function_words=cfg.function_words)
    pi = markov.stationary_distribution(P)
    exact = markov.ChainDenoiser(P, cfg.seq_len)
    mask_id, V, L = exact.mask_id, cfg.vocab_size, cfg.seq_len
    data = markov.sample_sequences(P, cfg.train_sequences, L, generator_on(device, generator, seed + 4))  # (N, L)

    model_config = DenoiserConfig.preset(cfg.preset, vocab_size=V + 1, max_seq_len=L)

    def train_model():
        torch.manual_seed(seed)
        model = Denoiser(model_config)
        history = train(model, data, mask_id, TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                                                          min_lr_ratio=0.0, log_every=max(1, cfg.steps // 100)),
                        device=device, seed=seed, progress=progress)
        return trained_models.TrainedModels({"model": model}, {"model": history.to_dict()}, environment(device, started))

    trained = trained_models.train_or_load(
        "ground_truth", trained_models.training_settings(cfg, TRAINING_FIELDS, seed, model_config), train_model,
        save_models, models, device)
    dtype = evaluation_dtype(device)
    model = trained.models["model"].to(dtype).eval()

    def learned(x):  # the trained model as a float64 denoiser answering on x's device
        return model(x.to(device)).double().to(x.device)

    # the sampling sweeps decode on a CUDA device when there is one (the exact denoiser too: it
    # computes where its input is); elsewhere on the CPU (MPS has no float64)
    decode_on = device if device.type == "cuda" else torch.device("cpu")

    metrics = {"chain": {"decay_rate": markov.decay_rate(P), "max_stationary": float(pi.max()),
                         "argmax_stationary": int(pi.argmax()), "omega1_omega2": list(zipf.omegas(cfg.s, V)),
                         "bound_limit": zipf.bound_limit(cfg.s, V),
                         "entropy_rate_nats": float(-(pi.unsqueeze(-1) * P * torch.log(P)).sum()),
                         "stationary_top10": [int(i) for i in pi.argsort(descending=True)[:10]]}}
    with torch.no_grad():
        prompts = torch.full((V, L), mask_id)
        prompts[:, 0] = torch.arange(V)  # every token as a one-token prompt, L - 1 masks after it
        exact_probs = exact.conditional_probs(prompts)[..., :V]  # (V, L, V)
        model_probs = denoiser_probs(learned(prompts), mask_id)[..., :V]  # (V, L, V)
        weights = pi.unsqueeze(-1)  # prompts weighted by how often they occur
        bound = markov.chain_distance_bound(P, cfg.s, L - 1)  # (L,)
        # position 0 is the prompt: the model predicts nothing there (None / -1 in its series)
        model_top = (weights * model_probs.max(-1).values).sum(0).tolist()
        model_tv = (weights * 0.5 * (model_probs - exact_probs).abs().sum(-1)).sum(0).tolist()
        model_argmax = model_probs.argmax(-1)  # (V, L)
        model_argmax[:, 0] = -1
        metrics["distance"] = {
            "n": list(range(L)),
            "exact_top": (weights * exact_probs.max(-1).values).sum(0).tolist(),
            "model_top": [None] + model_top[1:],
            "bound": bound.tolist(),
            "model_vs_exact_tv_by_n": [None] + model_tv[1:],
            "exact_argmax": exact_probs.argmax(-1).tolist(),  # (V, L)
            "model_argmax": model_argmax.tolist(),  # (V, L)
            "exact_tv_to_stationary_by_n": (weights * 0.5 * (exact_probs - pi).abs().sum(-1)).sum(0).tolist(),
        }
        eos_chain = markov.with_end_of_text(P, eos_id=V - 1)
        starts = torch.eye(V, dtype=torch.float64)[: V - 1]  # (V - 1, V): every prompt but EOS itself
        eos_rows = markov.distance_marginals(eos_chain, starts, 4 * L).transpose(0, 1)  # (V - 1, 4L + 1, V)
        metrics["end_of_text"] = {"eos_id": V - 1, "top_by_n": eos_rows.max(-1).values.mean(0).tolist(),
                                  "eos_by_n": eos_rows[..., V - 1].mean(0).tolist()}

        first = markov.sample_sequences(P, cfg.samples, 1, generator)[:, 0]  # prompts from pi
        x = torch.full((cfg.samples, L), mask_id)
        x[:, 0] = first
        x = x.to(decode_on)
        generator = generator_on(decode_on, generator, seed + 2)
        sweep = {"k": list(cfg.tokens_per_step), "bound_ppl": zipf.parallel_perplexity_bound(
            list(cfg.tokens_per_step), cfg.s, V).tolist()}
        for name, denoiser in (("exact", exact), ("model", learned)):
            ppl, confidence_ppl, nfe = [], [], []
            for k in cfg.tokens_per_step:
                decoded = decoders.sample_left_to_right(denoiser, x, mask_id, k, generator)
                nll = -markov.sequence_log_prob(P, decoded.tokens) / (L - 1)  # (samples,) true NLL per token
                ppl.append(math.exp(float(nll.mean())))
                nfe.append(decoded.nfe)
                if name == "exact":  # Metrics 1-2 measured on the exact marginals
                    confidence_ppl.append(_decoder_perplexity(denoiser, x, decoded, mask_id))
            sweep[name] = {"true_ppl": ppl, "nfe": nfe, **({"decoder_ppl": confidence_ppl} if confidence_ppl else {})}
        metrics["parallel"] = sweep
        metrics["random_init"] = _random_init_sweep(exact, learned, x[: cfg.random_init_samples], P, mask_id, V,
                                                    cfg.random_init_sweeps, generator)
        # its own stream: the results above do not use it
        variants = generator_on(decode_on, torch.Generator().manual_seed(seed + 1), seed + 3)
        prompts = x[: cfg.variant_samples]
        metrics["partial_random_init"] = partial_random_init_sweep(exact, prompts, P, cfg.init_fractions,
                                                                   cfg.init_tokens_per_step, variants)
        metrics["remasking"] = remasking_sweep(exact, prompts, P, cfg.remask_steps, cfg.remask_etas, variants)
    config = {"scale": asdict(cfg), "model": asdict(model.config), "schedule": "LinearSchedule()",
              "prompt": "one token drawn from the stationary distribution, then L - 1 masks",
              "evaluated_in": str(dtype).removeprefix("torch.")}
    return ExperimentResult("ground_truth", scale, seed, config, metrics, {"training": trained.histories["model"]},
                            {**environment(device, started), "training": trained.environment})


def _decoder_perplexity(denoiser, x, decoded, mask_id) -> float:
    """Perplexity of the generated tokens under the decoder's own probabilities at the moment it
    chose them (the product of marginals of each step): what Metrics 1-2 describe."""
    tokens, order = decoded.tokens, decoded.order
    log_p = torch.zeros(tokens.shape[0], dtype=torch.float64, device=tokens.device)
    for step in range(decoded.nfe):
        current = torch.where(order >= step, mask_id, tokens)  # the sequence before this step
        current = torch.where(x != mask_id, x, current)  # the prompt is always there
        probs = denoiser_probs(denoiser(current), mask_id)  # (B, L, V)
        chosen = order == step  # (B, L)
        picked = probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (B, L)
        log_p += torch.where(chosen, torch.log(picked), torch.zeros_like(picked)).sum(-1)
    return math.exp(float(-log_p.mean() / (x == mask_id).sum(-1).double().mean()))


def _random_init_sweep(exact, learned, x, P, mask_id, V, sweeps, generator) -> dict:
    """True perplexity of random-scan Gibbs from a random start after n (L - 1) denoiser calls,
    n in ``sweeps``, with k = 1 and 4 tokens redrawn per call (exact denoiser) and k = 1 (trained
    model); beside it, one token per step in a random order, which needs exactly L - 1 calls."""
    masks = int((x == mask_id).sum(-1).max())
    gibbs = decoders.sample_gibbs_from_random_start
    one_call = gibbs(exact, x, mask_id, V + 1, 1, 1, generator).tokens  # nearly the random start
    record = {"calls": [n * masks for n in sweeps], "one_call_ppl": _true_ppl(P, one_call, masks)}
    for name, denoiser, ks in (("exact", exact, (1, 4)), ("model", learned, (1,))):
        for k in ks:
            record[f"{name} k={k}"] = [_true_ppl(P, gibbs(denoiser, x, mask_id, V + 1, calls, k, generator).tokens, masks)
                                       for calls in record["calls"]]
        one_by_one = decoders.sample_one_at_a_time(denoiser, x, mask_id, generator).tokens
        record[f"{name} one at a time"] = _true_ppl(P, one_by_one, masks)
    return record


def _true_ppl(P: torch.Tensor, tokens: torch.Tensor, masks: int) -> float:
    """Perplexity under the chain of the generated tokens after the one-token prompt,
    exp(mean over sequences of -log P(x_1 .. x_n | x_0) / n): every sequence has a positive
    probability under a Zipf chain, so no sequence is left out."""
    return math.exp(float((-markov.sequence_log_prob(P, tokens) / masks).mean()))


def partial_random_init_sweep(denoiser, x: torch.Tensor, P: torch.Tensor, fractions, tokens_per_step,
                              generator: torch.Generator) -> dict:
    """The paper's random initialisation (``decoders.sample_partial_random_init``) for every share
    of initialised masks in ``fractions`` and every k in ``tokens_per_step``: true perplexity under
    the chain P and denoiser calls. Rows follow ``fractions``, columns ``tokens_per_step``; the
    row of fraction 0 is ordinary left-to-right decoding with k tokens per step."""
    mask_id = denoiser.mask_id
    masks = int((x == mask_id).sum(-1).max())
    record = {"fractions": list(fractions), "k": list(tokens_per_step), "true_ppl": [], "nfe": []}
    for fraction in fractions:
        runs = [decoders.sample_partial_random_init(denoiser, x, mask_id, mask_id + 1, fraction, k, generator)
                for k in tokens_per_step]
        record["true_ppl"].append([_true_ppl(P, run.tokens, masks) for run in runs])
        record["nfe"].append([run.nfe for run in runs])
    return record


def remasking_sweep(denoiser, x: torch.Tensor, P: torch.Tensor, steps, etas, generator: torch.Generator) -> dict:
    """Left-to-right remasking (``decoders.sample_with_remasking``) for every number of denoiser calls
    in ``steps`` and remasking probability in ``etas``: true perplexity under the chain P and the
    mean number of tokens decoded per call (the masks plus the remasked tokens, over the calls).
    Rows follow ``etas`` (``eta = 0``: no remasking), columns ``steps``."""
    mask_id = denoiser.mask_id
    masks = int((x == mask_id).sum(-1).max())
    record = {"steps": list(steps), "etas": list(etas), "true_ppl": [], "decoded_per_call": []}
    for eta in etas:
        runs = [decoders.sample_with_remasking(denoiser, x, mask_id, n, eta, generator) for n in steps]
        record["true_ppl"].append([_true_ppl(P, run.tokens, masks) for run in runs])
        record["decoded_per_call"].append([(masks + float(run.remasked.double().mean())) / n
                                           for run, n in zip(runs, steps)])
    return record


# How far retraining may move the trained model's numbers: about 1.5 times the largest difference
# between seeds 0, 1 and 2 at the ci scale (``maskdiff-tutor book-models --spread``), as an
# absolute tolerance for the top probability at distance n and relative to the value for perplexities.
TOP_TOLERANCE = {1: 0.02, 2: 0.06, 3: 0.05, 4: 0.05, 8: 0.03, 32: 0.015}
PPL_RELATIVE_TOLERANCE = {1: 0.3, 2: 0.45, 4: 0.2, 32: 0.08}  # k tokens per step


def headline(result: ExperimentResult) -> dict:
    """The numbers the chapter's conclusions rest on: name -> (value, tolerance), the tolerance
    being how far retraining may move the value (``book.check``; see ``TOP_TOLERANCE``).
    Retraining with the same seed on another CPU moves the values less."""
    d, p, ri = result.metrics["distance"], result.metrics["parallel"], result.metrics["random_init"]
    function_words = result.config["scale"]["function_words"]
    numbers = {f"trained top probability, n = {n}": (d["model_top"][n], tolerance)
               for n, tolerance in TOP_TOLERANCE.items()}
    for n in (1, 3, 6):
        share = sum(row[n] < function_words for row in d["model_argmax"]) / len(d["model_argmax"])
        numbers[f"trained: share of prompts whose argmax is a function word, n = {n}"] = (share, 0.1)
    for i, k in enumerate(p["k"]):
        if k in PPL_RELATIVE_TOLERANCE:
            value = p["model"]["true_ppl"][i]
            numbers[f"trained: true PPL, k = {k}"] = (value, PPL_RELATIVE_TOLERANCE[k] * value)
    for i, calls in enumerate(ri["calls"]):
        value = ri["model k=1"][i]
        numbers[f"trained: Gibbs from a random start, true PPL after {calls} calls"] = (value, 0.2 * value)
    value = ri["model one at a time"]
    numbers["trained: one token per step in random order, true PPL"] = (value, 0.05 * value)
    return numbers
