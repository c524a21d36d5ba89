"""The registry of the paper's 16 claims: statement, section, evidence sentences and one verdict.

Data for :mod:`maskdiff_tutor.claims`, which renders it. Each statement is the paper's claim in
this book's words; each evidence sentence names the numbers (``{name}``) that a chapter computes.
The list of claims is the book's plan (Sections 3.2-3.4 of the paper); edit a verdict here and
every chapter and the Verdict chapter change with it.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

VERDICTS = ("holds", "holds loosely", "does not hold", "not tested here")

CHAPTER_TITLES = {
    "nelbo": "The NELBO",
    "joint_vs_marginal": "Joint versus marginal",
    "distance_bound": "The distance bound",
    "parallel_sampling": "Ground truth",
    "generation_order": "Generation order",
    "blocks": "Blocks",
}


@dataclass(frozen=True)
class Claim:
    """One claim of the paper, the book's evidence for it and its one verdict.

    ``evidence`` maps a chapter (its file name without extension) to a sentence whose named
    fields (``{name}`` or ``{name:.3f}``) are numbers that chapter computes. ``deciding`` is
    ``"chapter:name"``, the number the verdict rests on most.
    """

    number: int
    section: str
    statement: str
    verdict: str
    qualifier: str
    evidence: dict[str, str] = field(default_factory=dict)
    deciding: str | None = None

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"claim {self.number}: verdict must be one of {VERDICTS}; got {self.verdict!r}")
        unknown = set(self.evidence) - set(CHAPTER_TITLES)
        if unknown:
            raise ValueError(f"claim {self.number}: evidence from unknown chapters {sorted(unknown)}; "
                             f"chapters are {sorted(CHAPTER_TITLES)}")
        if self.deciding is not None:
            chapter, _, name = self.deciding.partition(":")
            if name not in fields_of(self.evidence.get(chapter, "")):
                raise ValueError(f"claim {self.number}: deciding number {self.deciding!r} is not a field of "
                                 f"its evidence in {chapter!r}")

    @property
    def verdict_text(self) -> str:
        """The verdict followed by its qualifier, as the verdict tables print it."""
        return f"{self.verdict}: {self.qualifier}" if self.qualifier else self.verdict


def fields_of(template: str) -> dict[str, str]:
    """The named fields of an evidence sentence and their format specs: ``{name: spec}``."""
    found: dict[str, str] = {}
    for _literal, name, spec, _conversion in string.Formatter().parse(template):
        if name is not None:
            if not name.isidentifier():
                raise ValueError(f"evidence fields must be names; got {{{name}}} in {template!r}")
            found[name] = spec or ""
    return found




def _claims(*claims: Claim) -> dict[int, Claim]:
    numbers = [c.number for c in claims]
    if numbers != list(range(1, len(claims) + 1)):
        raise ValueError(f"claims must be numbered 1..{len(claims)} in order; got {numbers}")
    return {c.number: c for c in claims}


CLAIMS: dict[int, Claim] = _claims(
    Claim(1, "3.2.1", "The weights of the loss shape training, not its optimum.",
          "holds", "exactly for a fully flexible denoiser; to training accuracy on the toy",
          {"nelbo": "The exact NELBO and the unweighted loss have the same minimiser (P(A) = {minimiser_nelbo} "
                    "and {minimiser_unweighted}, the true conditional).",
           "joint_vs_marginal": "Models trained with and without the weight predict within {pred_diff} of each "
                                "other (mean {pred_diff_mean}) on every masked input of the toy."},
          deciding="joint_vs_marginal:pred_diff"),
    Claim(2, "3.2.1", "The denoiser needs no time input.",
          "holds", "exactly: the optimal denoiser does not depend on t",
          {"nelbo": "The time-conditioned posterior equals the time-free one to within {time_free_gap} for every "
                    "time and schedule tried.",
           "joint_vs_marginal": "A model with no time input learns the exact marginals to within {err_all_weighted} "
                                "over every masked input of the toy."},
          deciding="nelbo:time_free_gap"),
    Claim(3, "3.2.2", "The denoiser outputs the marginal of each mask, not their joint: parallel argmax picks AB "
                      "while the joint's mode is A'B.",
          "holds", "on the paper's toy, exact and trained",
          {"joint_vs_marginal": "The trained model's parallel argmax gives {parallel_pair}, beam search {beam_pair}; "
                                "all-at-once sampling is {tv_once} from the joint in total variation, as far as the "
                                "product of the exact marginals ({tv_exact}); one token per step {tv_seq} (the "
                                "sampling noise of {n_samples} draws is about {tv_noise})."},
          deciding="joint_vs_marginal:tv_once"),
    Claim(4, "3.2.3", "The top probability of a mask decays with its distance from unmasked text, under the bound "
                      "of Eq. 17, towards the limit of Eq. 18.",
          "holds loosely", "true on every chain measured and a theorem under the book's Assumption H, but Eq. 16 "
                           "does not follow from Assumptions 3-4 as the paper states them",
          {"distance_bound": "Eq. 16 does not follow from Assumptions 3-4 as stated: a language meeting them "
                             "(N = 5, s = 2.31) keeps top probability {ce_pbar2} at every distance n >= 2, above "
                             "Eq. 17's {ce_eq17_n6} at n = 6; random languages meeting them break Eq. 17 in "
                             "{random_broken} of {random_total}, and in {random_h_broken} once the book's "
                             "Assumption H is added. On an exact Zipf chain meeting all three the bound holds at "
                             "every distance."},
          deciding="distance_bound:ce_pbar2"),
    Claim(5, "Observation 1", "Near the end of the sequence the top probability rises again, from end-of-text "
                              "tokens.",
          "holds", "with an absorbing end-of-text token",
          {"parallel_sampling": "The exact top probability falls to {eos_dip}, then rises to {eos_at_end} at n = 32, "
                                "where the chapter's sequences end, and to {eos_far} at n = {eos_far_n} on a "
                                "sequence four times as long."},
          deciding="parallel_sampling:eos_far"),
    Claim(6, "Observation 2", "The curves fall steeply over the first ~15 masks; the floor depends on the task.",
          "holds loosely", "steep, but the length of the fall is set by the exponent, not a constant 15",
          {"distance_bound": "Exact Zipf chains: 99% of the fall is done by n = {task_n99_max_s231} for every s up to "
                             "2.31, but only by n = {task_n99_s3} at s = 3; floors range from {task_floor_min} to "
                             "{task_floor_max}, set by how much mass the most frequent tokens carry.",
           "blocks": "A character-level model trained on Tiny Shakespeare: top probability {text_top_n1} one "
                     "character after the prompt, {text_top_n15} at 15; 90% of its fall done by n = {text_n90}, "
                     "then flat at {text_floor}."},
          deciding="distance_bound:task_n99_max_s231"),
    Claim(7, "Observation 3", "The true curve ends below the bound's limit.",
          "holds", "always, as a theorem under Assumption H; the floor of the bound is far from tight, so it "
                   "says little",
          {"distance_bound": "The exact chain ends at max(pi) = {max_pi}, far below p* = {p_star}.",
           "parallel_sampling": "True limit max(pi) = {gt_limit} against p* = {gt_bound_limit}."},
          deciding="parallel_sampling:gt_limit"),
    Claim(8, "3.2.4, conjecture", "Far masks homogenise into frequent tokens; at large distances their "
                                   "distributions become almost identical.",
          "holds", "a theorem for ergodic chains; seen on the trained model",
          {"parallel_sampling": "With the exact denoiser the far masks predict the most frequent token after a share "
                                "{homog_exact_far} of the prompts, against {homog_exact_near} next to the prompt."},
          deciding="parallel_sampling:homog_exact_far"),
    Claim(9, "3.3", "Parallel sampling lowers the joint probability; with Eq. 17 and Metric 2 (Table 2) a "
                    "perplexity budget of 17 allows about 6 parallel samples.",
          "holds loosely", "the joint probability falls; Table 2 recomputed allows 7 samples, not 6",
          {"distance_bound": "Table 2 recomputed at the paper's settings (s = 1.05, N = 150,000): PPL_7 = {t2_ppl7} "
                             "<= 17 < PPL_8 = {t2_ppl8}, so a budget of 17 allows {t2_k_ours} parallel samples "
                             "({t2_k_printed} from the printed column); the printed column implies per-position "
                             "probabilities below Eq. 18's floor p* = {t2_p_star}, which Eq. 17 cannot give.",
           "parallel_sampling": "True perplexity rises from {ppl_k1} (one token per step) to {ppl_k2} (two) and "
                                "{ppl_kall} (all at once) with exact marginals."},
          deciding="distance_bound:t2_k_ours"),
    Claim(10, "3.3", "Remasking gives neither parallelism nor acceleration.",
          "does not hold", "on the exact chain remasking reaches a given quality in about half the calls, though "
                           "never the language's own sooner; trained models are not measured yet",
          {"parallel_sampling": "32 masks, exact denoiser: with 8 calls, left-to-right remasking (eta = {rm_eta}) "
                                "reaches true PPL {rm_8} against {base_8} without; with 16 calls {rm_16} against "
                                "{base_16}; with 32 calls decoding without remasking is exact ({rm_none_32}) and "
                                "remasking is worse ({rm_32})."},
          deciding="parallel_sampling:rm_8"),
    Claim(11, "3.3", "The SEDD-inspired random initialisation is inefficient and does not speed decoding up.",
          "holds loosely", "no speed-up at a quality near the language's own; about half the calls at a perplexity "
                           "near 17",
          {"parallel_sampling": "A share f of the masks initialised at random, exact denoiser: at one token per call "
                                "the true PPL rises from {pri_f0_k1} (f = 0) to {pri_f75_k1} (f = 0.75); at 8 per "
                                "call f = 0.5 gives {pri_f50_k8} in {pri_f50_k8_calls} calls, where ordinary "
                                "decoding gives {base_8} in 8 and {base_16} in 16; no setting with 4 or more per "
                                "call goes below {pri_floor}. The book's Gibbs variant: {ri_equal} after as many "
                                "calls as one token per step, against {ri_one}."},
          deciding="parallel_sampling:pri_f50_k8"),
    Claim(12, "3.4.1", "With one token per step, confidence decoding is nearly left to right; left to right is "
                       "the best order in general.",
          "holds loosely", "greedy confidence decoding after a prompt is exactly left to right with the exact "
                           "denoiser on the chain and nearly so for the trained model, less so on text, and sampled "
                           "decoding is not; one token per step in any order fixed before the token is drawn "
                           "samples exactly, so left to right only ties for best",
          {"generation_order": "Exact denoiser: greedy confidence decoding is left to right on a first-order chain "
                               "meeting Assumptions 3-4 (rank correlation {rho_conf_chain}); sampled confidence "
                               "decoding takes the leftmost mask in a share {left_conf_sampled} of its steps.",
           "blocks": "Greedy confidence decoding after a prompt: leftmost share {bl_greedy_left} for the trained "
                     "random-masking model on the chain, {text_greedy_left} on Tiny Shakespeare (rank correlation "
                     "of position and step {text_greedy_rho}); sampled decoding from nothing: {chain_random_left}."},
          deciding="blocks:bl_greedy_left"),
    Claim(13, "3.4.1", "Reverse-order generation comes from the end-of-text token in long sequences.",
          "holds", "with an absorbing end-of-text token",
          {"generation_order": "Greedy confidence decoding runs right to left (rank correlation {rho_conf_eos})."},
          deciding="generation_order:rho_conf_eos"),
    Claim(14, "3.4.1", "Random order is fluent, but only one token at a time.",
          "holds loosely", "fluent one token at a time; several at a time cost far less in random order than in "
                           "left-to-right order",
          {"generation_order": "Exact denoiser: one token per step in random order samples the chain (true PPL "
                               "{ppl_chain_k1}); with 4 per step random order reaches {ppl_random_k}, adjacent "
                               "(margin) order {ppl_margin_k}."},
          deciding="generation_order:ppl_random_k"),
    Claim(15, "3.4.2", "Semi-autoregressive generation in small blocks (4 or 8) is the best inference; large blocks "
                       "are nearly useless.",
          "does not hold", "with 4 tokens per step blocks of 4 are the worst setting measured, even with the exact "
                           "denoiser",
          {"blocks": "Four tokens per step with the exact denoiser: true PPL {chain_exact_b4_k4} in blocks of 4 "
                     "against {chain_exact_whole_k4} in one block; the trained random-masking model, one token per "
                     "step in random order, barely depends on the block ({chain_random_b4_rand} in blocks of 4, "
                     "{chain_random_whole_rand} in one)."},
          deciding="blocks:chain_exact_b4_k4"),
    Claim(16, "3.4.2", "Blockwise reverse-order training matches that inference and is cheaper to learn.",
          "holds loosely", "block-causal training in blocks of 4 beats random masking decoded in blocks of 4 (one "
                           "seed); left to right beats both; the paper's literal scheme is the worst",
          {"blocks": "Held-out bound at equal compute, in nats per token: block-causal B = 4 {chain_bw4_bound} against "
                     "random masking decoded in blocks of 4 {chain_random_b4_bound} on the chain ({text_bw4_bound} "
                     "against {text_random_b4_bound} on text, within the spread between seeds); the literal "
                     "scheme {chain_lit8_bound}; left to right {chain_l2r_bound}, the chain's own "
                     "{chain_valid_nll}."},
          deciding="blocks:chain_bw4_bound"),
)
