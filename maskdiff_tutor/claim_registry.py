"""The registry of the paper's 19 claims: statement, section, evidence, scope and one verdict.

Data for :mod:`maskdiff_tutor.claims`, which renders it. Each statement is the paper's claim in
this book's words; each :class:`Evidence` is a sentence whose named fields (``{name}``) are
computed by a function of typed results (:mod:`maskdiff_tutor.claim_evidence`): the records the
experiments return, or the package's exact computations. Nothing is looked up by a name the
chapters chose: the evidence reads the results' own fields. The list of claims is the book's plan
(Sections 3.2-3.4 of the paper); edit a verdict here and every chapter and the Verdict chapter
change with it.

Every verdict names its scope: the kinds of evidence it was judged on (``SCOPES``) and the one
that decided it. Evidence of one kind does not speak for another: a verdict judged on synthetic
languages only says so in its headline.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from maskdiff_tutor import claim_evidence as ev

# "within the seed spread": the verdict rests on a difference between two trained numbers whose
# sign is not the same for every training seed (``Claim.contrasts``), so neither way is shown.
VERDICTS = ("holds", "holds loosely", "does not hold", "within the seed spread", "not tested here")

# The kinds of evidence a verdict can rest on, by key, with the words its headline uses. A
# synthetic language is the toy of Section 3.2.2 or a Zipf Markov chain: its exact answers are known.
SCOPES = {
    "proof": "proof",
    "exact": "exact denoiser",
    "trained": "trained, synthetic",
    "text": "trained, text",
    "real": "real model",
}
SYNTHETIC = ("proof", "exact", "trained")  # the kinds that speak only of synthetic languages

CHAPTER_TITLES = {
    "nelbo": "The NELBO",
    "joint_vs_marginal": "Joint versus marginal",
    "distance_bound": "The distance bound",
    "parallel_sampling": "Ground truth",
    "generation_order": "Generation order",
    "blocks": "Blocks",
}


@dataclass(frozen=True)
class Evidence:
    """What one chapter measured for a claim: a sentence whose named fields (``{name}`` or
    ``{name:.3f}``) are filled by ``values(sources)``, a function that reads them from typed results.
    The ``seeded`` fields are measured on trained models: where the models of several seeds are
    given, each is read from every seed and printed as its mean and range."""

    chapter: str  # the chapter that measures it (its file name without extension)
    sentence: str  # the evidence in words, with named fields
    values: Callable[..., Mapping[str, object]]  # sources -> {field: value}
    seeded: tuple[str, ...] = ()  # the fields read from trained models, which move with the training seed

    def __post_init__(self):
        if self.chapter not in CHAPTER_TITLES:
            raise ValueError(f"evidence from unknown chapter {self.chapter!r}; chapters are {sorted(CHAPTER_TITLES)}")
        unknown = sorted(set(self.seeded) - set(fields_of(self.sentence)))  # the fields must be names
        if unknown:
            raise ValueError(f"seeded fields {unknown} are not fields of the sentence {self.sentence!r}")


@dataclass(frozen=True)
class Claim:
    """One claim of the paper, the book's evidence for it and its one verdict. ``scope`` is the
    kinds of evidence it was judged on (keys of ``SCOPES``), ``decided_by`` the kind that decided
    it; ``deciding`` is the field of its evidence that the verdict rests on most. ``contrasts`` are
    pairs of trained numbers (seeded fields) the verdict compares, the first where a trained kind
    decided it: read seed by seed, the verdict is "within the seed spread" exactly where that
    first difference changes sign between seeds (a test checks it against the book's results)."""

    number: int
    section: str
    statement: str
    verdict: str
    qualifier: str
    scope: tuple[str, ...]
    decided_by: str
    evidence: tuple[Evidence, ...] = ()
    deciding: str | None = None
    contrasts: tuple[tuple[str, str, str], ...] = ()  # (first field, second field, the comparison in words)

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"claim {self.number}: verdict must be one of {VERDICTS}; got {self.verdict!r}")
        unknown = [k for k in self.scope if k not in SCOPES]
        if not self.scope or unknown:
            raise ValueError(f"claim {self.number}: scope must be one or more of {sorted(SCOPES)}; got {self.scope}")
        if self.decided_by not in self.scope:
            raise ValueError(f"claim {self.number}: decided_by must be one of its scope {self.scope}; "
                             f"got {self.decided_by!r}")
        chapters = [e.chapter for e in self.evidence]
        if len(set(chapters)) != len(chapters):
            raise ValueError(f"claim {self.number}: one evidence per chapter; got {chapters}")
        if self.deciding is not None and not any(self.deciding in fields_of(e.sentence) for e in self.evidence):
            raise ValueError(f"claim {self.number}: deciding number {self.deciding!r} is not a field of its evidence")
        self._check_contrasts()

    def _check_contrasts(self) -> None:
        seeded = {name for e in self.evidence for name in e.seeded}
        loose = sorted({name for first, second, _ in self.contrasts for name in (first, second)} - seeded)
        if loose:
            raise ValueError(f"claim {self.number}: contrasts must compare seeded fields; not seeded: {loose}")

    @property
    def scope_text(self) -> str:
        """The scope in words. It lists the kinds of evidence, says "synthetic languages only" where
        no model of text was measured, and names the kind that decided where there are several."""
        words = " + ".join(SCOPES[k] for k in self.scope)
        if all(k in SYNTHETIC for k in self.scope):
            words = f"synthetic languages only: {words}"
        if len(self.scope) > 1:
            words += f"; decided by: {SCOPES[self.decided_by]}"
        return words

    @property
    def verdict_text(self) -> str:
        """The verdict, its scope and its qualifier, as the verdict tables print them."""
        return f"{self.verdict} ({self.scope_text}): {self.qualifier}"

    def evidence_in(self, chapter: str) -> Evidence | None:
        """The claim's evidence from ``chapter``, or None where that chapter does not measure it."""
        return next((e for e in self.evidence if e.chapter == chapter), None)


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
          ("proof", "trained"), "proof",
          (Evidence("nelbo", "The exact NELBO and the unweighted loss have the same minimiser (P(A) = "
                             "{minimiser_nelbo} and {minimiser_unweighted}, the true conditional).", ev.weights_exact),
           Evidence("joint_vs_marginal", "Models trained with and without the weight predict within {pred_diff} of "
                                         "each other (mean {pred_diff_mean}) on every masked input of the toy.",
                    ev.weights_trained,
                    seeded=("pred_diff", "pred_diff_mean"))),
          deciding="minimiser_nelbo"),
    Claim(2, "3.2.1", "The denoiser needs no time input.",
          "holds", "exactly: the optimal denoiser does not depend on t",
          ("proof", "trained"), "proof",
          (Evidence("nelbo", "The time-conditioned posterior equals the time-free one to within "
                             "{time_free_gap:.0e} for every time and schedule tried.", ev.time_exact),
           Evidence("joint_vs_marginal", "A model with no time input learns the exact marginals to within "
                                         "{err_all_weighted} over every masked input of the toy.", ev.time_trained,
                    seeded=("err_all_weighted",))),
          deciding="time_free_gap"),
    Claim(3, "3.2.2", "The denoiser outputs the marginal of each mask, not their joint: parallel argmax picks AB "
                      "while the joint's mode is A'B.",
          "holds", "on the paper's toy, with its exact marginals and with a trained model",
          ("exact", "trained"), "exact",
          (Evidence("joint_vs_marginal", "The trained model's parallel argmax gives {parallel_pair}, beam search "
                                         "{beam_pair}; all-at-once sampling is {tv_once} from the joint in total "
                                         "variation, as far as the product of the exact marginals ({tv_exact}); one "
                                         "token per step {tv_seq:.2f} (the sampling noise of {n_samples:,} draws is "
                                         "about {tv_noise}).", ev.marginals,
                    seeded=("parallel_pair", "beam_pair", "tv_once", "tv_seq")),),
          deciding="tv_exact",
          contrasts=(("tv_once", "tv_seq", "TV to the joint: all at once - one per step"),)),
    Claim(4, "3.2.3", "The top probability of a mask decays with its distance from unmasked text, under the bound "
                      "of Eq. 17, towards the limit of Eq. 18.",
          "holds loosely", "true on every chain measured and a theorem under the book's Assumption H, but Eq. 16 "
                           "does not follow from Assumptions 3-4 as the paper states them",
          ("proof", "exact"), "proof",
          (Evidence("distance_bound", "Eq. 16 does not follow from Assumptions 3-4 as stated: a language meeting them "
                                      "(N = 5, s = 2.31) keeps top probability {ce_pbar2} at every distance n >= 2, "
                                      "above Eq. 17's {ce_eq17_n6} at n = 6; random languages meeting them break "
                                      "Eq. 17 in {random_broken} of {random_total}, and in {random_h_broken} once the "
                                      "book's Assumption H is added. On an exact Zipf chain meeting all three the "
                                      "bound holds at every distance.", ev.decay_bound),),
          deciding="ce_pbar2"),
    Claim(5, "Observation 1", "Near the end of the sequence the top probability rises again, from end-of-text "
                              "tokens.",
          "holds", "with an absorbing end-of-text token",
          ("exact",), "exact",
          (Evidence("parallel_sampling", "The exact top probability falls to {eos_dip}, then rises to {eos_at_end} at "
                                         "n = 32, where the chapter's sequences end, and to {eos_far} at n = "
                                         "{eos_far_n} on a sequence four times as long.", ev.end_of_text),),
          deciding="eos_far"),
    Claim(6, "Observation 2", "The curves fall steeply within the first 15 masks; where they end and where they "
                              "turn up depends on the task: a higher floor for clear, simple tasks, an earlier upturn "
                              "for short answers.",
          "holds loosely", "steep, and within the first 15 masks on the chains up to s = 2.31 and on text, but not "
                           "on the most peaked chain; the floor follows the mass of the most frequent tokens, not "
                           "how predictable the language is; shorter answers do bring the upturn earlier",
          ("exact", "trained", "text"), "exact",
          (Evidence("distance_bound", "Exact Zipf chains: 99% of the fall is done by n = {task_n99_max_s231} for every "
                                      "s up to 2.31, but only by n = {task_n99_s3} at s = 3; floors range from "
                                      "{task_floor_min} to {task_floor_max}, set by how much mass the most frequent "
                                      "tokens carry: with 5 function words the most predictable chain (s = 3) ends "
                                      "lower ({floor_fw_s3}) than one at s = 1.5 ({floor_fw_s15}).", ev.fall_exact),
           Evidence("parallel_sampling", "With an absorbing end-of-text token made likelier (the book's construction), "
                                         "answers of {len_long} tokens on average turn up at n = {dip_long}, answers "
                                         "of {len_short} at n = {dip_short}. A ladder of trained denoisers: 90% of "
                                         "the fall is done by n = {fall_weak} at a NELBO gap of {gap_weak} nats per "
                                         "token, by n = {fall_best} at {gap_best}, by n = {fall_exact} for the exact "
                                         "denoiser.", ev.upturn,
                    seeded=("gap_weak", "fall_weak", "gap_best", "fall_best")),
           Evidence("blocks", "A character-level model trained on Tiny Shakespeare: top probability {text_top_n1} one "
                              "character after the prompt, {text_top_n15} at 15; 90% of its fall done by n = "
                              "{text_n90}, then flat at {text_floor}.", ev.fall_text,
                    seeded=("text_top_n1", "text_top_n15", "text_n90", "text_floor"))),
          deciding="task_n99_s3"),
    Claim(7, "Observation 3", "The estimate follows the true curve at first; the true curve then ends below the "
                              "bound's limit, though noticeably above zero.",
          "holds loosely", "the bound equals the true curve one mask away and parts from it soon after; the true "
                           "curve ends below the limit on every chain meeting the book's Assumption H, not on the "
                           "book's language without it; where it ends is the largest token frequency: noticeably "
                           "above zero on text and on a chain with function words, close to zero on a chain without "
                           "them",
          ("proof", "exact", "text"), "exact",
          (Evidence("distance_bound", "Exact chain (V = 2,000, s = 2.31): top probability {top_n1} against Eq. 17's "
                                      "{bound_n1} at n = 1, {top_n3} against {bound_n3} at n = 3; it ends at max(pi) = "
                                      "{max_pi}, far below p* = {p_star}. The book's language that meets Assumptions "
                                      "3-4 but not H ends at {ce_end}, above its p* = {ce_p_star}.", ev.floor_exact),
           Evidence("parallel_sampling", "On the ground-truth chain, with 2 function words: true limit max(pi) = "
                                         "{gt_limit} against p* = {gt_bound_limit}.", ev.floor_chain),
           Evidence("blocks", "The model trained on Tiny Shakespeare: its curve flattens at {text_floor_7}, well "
                              "above zero.", ev.floor_text,
                    seeded=("text_floor_7",))),
          deciding="max_pi"),
    Claim(8, "3.2.4, conjecture", "Far masks homogenise into frequent tokens; at large distances their "
                                   "distributions become almost identical.",
          "holds", "a theorem for ergodic chains; seen with the exact denoiser and with every trained one, however "
                   "poor",
          ("proof", "exact", "trained"), "proof",
          (Evidence("parallel_sampling", "The far masks predict a function word after a share {homog_exact_far} of "
                                         "the prompts with the exact denoiser ({homog_trained_far} trained, "
                                         "{homog_weak_far} for the weakest model of the ladder, at a NELBO gap of "
                                         "{homog_gap_weak} nats per token), against {homog_exact_near} next to the "
                                         "prompt.", ev.homogenisation,
                    seeded=("homog_trained_far", "homog_weak_far", "homog_gap_weak")),),
          deciding="homog_exact_far"),
    Claim(9, "3.3", "Parallel sampling lowers the joint probability; with Eq. 17 and Metric 2 (Table 2) a "
                    "perplexity budget of 17 allows about 6 parallel samples.",
          "holds loosely", "the joint probability falls; Table 2 recomputed allows 7 samples, not 6",
          ("proof", "exact"), "proof",
          (Evidence("distance_bound", "Table 2 recomputed at the paper's settings (s = 1.05, N = 150,000): PPL_7 = "
                                      "{t2_ppl7} <= 17 < PPL_8 = {t2_ppl8}, so a budget of 17 allows {t2_k_ours} "
                                      "parallel samples ({t2_k_printed} from the printed column); the printed column "
                                      "implies per-position probabilities below Eq. 18's floor p* = {t2_p_star}, "
                                      "which Eq. 17 cannot give.", ev.table_2),
           Evidence("parallel_sampling", "True perplexity rises from {ppl_k1} (one token per step) to {ppl_k2} (two) "
                                         "and {ppl_kall} (all at once) with exact marginals, sampled; the token "
                                         "entropy stays at least {cost_h_min} (the language's {cost_h_language}).",
                    ev.cost_of_k)),
          deciding="t2_k_ours"),
    Claim(10, "3.3", "Remasking gives neither parallelism nor acceleration.",
          "does not hold", "by the standard claim 11 is judged by: remasking reaches two and four times the language's "
                           "perplexity in fewer calls than ordinary decoding; at the language's own perplexity neither "
                           "is shown faster",
          ("exact",), "exact",
          (Evidence("parallel_sampling", "32 masks, exact denoiser, sampled: the fewest calls that reach a true PPL "
                                         "of 1.25, 2 and 4 times the language's own ({language_ppl}) are "
                                         "{x125_method}, {x2_method} and {x4_method} with remasking, against "
                                         "{x125_ordinary}, {x2_ordinary} and {x4_ordinary} without; with 8 calls "
                                         "remasking (eta = {rm_eta}) gives {rm_8} against {base_8}. Every setting "
                                         "keeps a token entropy between {h_min} and {h_max} (the language's "
                                         "{h_language}).", ev.remasking),),
          deciding="x2_method"),
    Claim(11, "3.3", "The SEDD-inspired random initialisation is inefficient and does not speed decoding up.",
          "holds loosely", "by the standard claim 10 is judged by: it reaches four times the language's perplexity "
                           "in fewer calls than ordinary decoding, but neither twice it nor the language's own",
          ("exact",), "exact",
          (Evidence("parallel_sampling", "32 masks, exact denoiser, sampled, a share of the masks initialised at "
                                         "random: the fewest calls that reach a true PPL of 1.25, 2 and 4 times the "
                                         "language's own ({language_ppl}) are {x125_method}, {x2_method} and "
                                         "{x4_method}, against {x125_ordinary}, {x2_ordinary} and {x4_ordinary} "
                                         "without; half the masks initialised, 8 per call, gives {pri_f50_k8} in "
                                         "{pri_f50_k8_calls} calls; no setting with 4 or more per call goes below "
                                         "{pri_floor}. Every setting keeps a token entropy between {h_min} and "
                                         "{h_max} (the language's {h_language}).", ev.random_init),),
          deciding="x2_method"),
    Claim(12, "3.4.1", "With one token per step, confidence decoding is nearly left to right; left to right is "
                       "the best order in general.",
          "holds loosely", "greedy confidence decoding after a prompt is exactly left to right with the exact "
                           "denoiser; trained models of the chain approach it as they improve, but unevenly: over "
                           "three seeds the best rung of the ladder takes the leftmost mask in half to all of its "
                           "steps; neither text model is left to right (the larger one, a better denoiser, comes "
                           "closer), and the verdict follows the chain, whose answers are known; sampled decoding is "
                           "not left to right; one token per step in any order fixed before the token is "
                           "drawn samples exactly, so left to right only ties for best",
          ("exact", "trained", "text"), "exact",
          (Evidence("generation_order", "Exact denoiser: greedy confidence decoding is left to right on a first-order "
                                        "chain meeting Assumptions 3-4 (rank correlation {rho_conf_chain}); sampled "
                                        "confidence decoding takes the leftmost mask in a share {left_conf_sampled} "
                                        "of its steps.", ev.order_exact),
           Evidence("blocks", "Greedy confidence decoding after a prompt: leftmost share {bl_greedy_left} for the "
                              "trained random-masking model on the chain, {text_greedy_left} on Tiny Shakespeare "
                              "(rank correlation of position and step {text_greedy_rho}); sampled decoding from "
                              "nothing: {chain_random_left}.", ev.order_trained,
                    seeded=("bl_greedy_left", "text_greedy_left", "text_greedy_rho", "chain_random_left")),
           Evidence("parallel_sampling", "A ladder of denoisers on the chain, greedy confidence decoding after a "
                                         "prompt: leftmost share {lad_left_weak} at a NELBO gap of {lad_gap_weak} "
                                         "nats per token, {lad_left_mid} at {lad_gap_mid}, {lad_left_best} at "
                                         "{lad_gap_best}, {lad_left_exact} for the exact denoiser.", ev.order_ladder,
                    seeded=("lad_left_weak", "lad_gap_weak", "lad_left_mid", "lad_gap_mid", "lad_left_best",
                            "lad_gap_best"))),
          deciding="rho_conf_chain"),
    Claim(13, "3.4.1", "Reverse-order generation comes from the end-of-text token in long sequences.",
          "holds", "with an absorbing end-of-text token",
          ("exact",), "exact",
          (Evidence("generation_order", "Greedy confidence decoding runs right to left (rank correlation "
                                        "{rho_conf_eos}).", ev.reverse_order),),
          deciding="rho_conf_eos"),
    Claim(14, "3.4.1", "Random order is fluent, but only one token at a time.",
          "holds loosely", "one token at a time it samples the chain exactly, and on text it writes as well as left "
                           "to right with the same model; but several at a time cost far less in random order than "
                           "in left-to-right order",
          ("exact", "text"), "exact",
          (Evidence("generation_order", "Exact denoiser: one token per step in random order samples the chain (true "
                                        "PPL {ppl_chain_k1}); with 4 per step random order reaches {ppl_random_k}, "
                                        "adjacent (margin) order {ppl_margin_k}, both at a token entropy of at "
                                        "least {order_h} (the chain's {order_h_language}).", ev.random_order),
           Evidence("blocks", "The random-masking model on Tiny Shakespeare, random order, judge's perplexity: "
                              "{text_rand_k1} at one token per step (left to right with the same model "
                              "{text_l2r_k1}), {text_rand_k4} at 4, {text_rand_k8} at 8, each at a token entropy of "
                              "at least {text_rand_h} (the text's {text_h}).", ev.random_order_text,
                    seeded=("text_rand_k1", "text_rand_k4", "text_rand_k8", "text_rand_h", "text_l2r_k1"))),
          deciding="ppl_random_k"),
    Claim(15, "3.4.2", "Semi-autoregressive generation in small blocks (4 or 8) is the best inference; large blocks "
                       "are nearly useless.",
          "does not hold", "at the language's diversity and 4 tokens per step, blocks of 4 are the worst setting "
                           "measured, with the exact denoiser and with models trained on the chain and on text; "
                           "confidence-ordered decoding in one block goes lower only by collapsing diversity",
          ("exact", "trained", "text"), "exact",
          (Evidence("blocks", "Four tokens per step, in a random order inside each block, exact denoiser on the "
                              "chain: true PPL {chain_exact_b4_k4} in blocks of 4, {chain_exact_b8_k4} in blocks of "
                              "8, {chain_exact_one_k4} in one block, each at a token entropy of at least "
                              "{chain_exact_h} (the chain: PPL {chain_ppl}, entropy {chain_h}). Sampling in "
                              "confidence order in one block reaches {chain_conf_one_k4}, below the chain's own "
                              "perplexity, at entropy {chain_conf_one_h}: a collapse of diversity, not a better "
                              "decoding. The "
                              "random-masking model: {chain_random_b4_k4} in blocks of 4 against "
                              "{chain_random_one_k4} in one on the chain, {text_random_b4_k4} against "
                              "{text_random_one_k4} on text.", ev.small_blocks,
                    seeded=("chain_random_b4_k4", "chain_random_one_k4", "text_random_b4_k4", "text_random_one_k4")),),
          deciding="chain_exact_one_k4",
          contrasts=(("chain_random_b4_k4", "chain_random_one_k4",
                      "PPL, 4 per step: blocks of 4 - one block"),)),
    Claim(16, "3.4.2", "Blockwise reverse-order training matches that inference and is cheaper to learn.",
          "does not hold", "the paper's scheme, trained at equal forward tokens, has the worst held-out bound with "
                           "each of three seeds, on the chain and on text, and runs several times the forward tokens "
                           "per sequence; the book's block-causal variant, not the paper's scheme, beats random "
                           "masking decoded in blocks of 4 with some seeds and not with others, on the chain and on "
                           "text: that difference lies within the seed spread",
          ("trained", "text"), "trained",
          (Evidence("blocks", "The paper's scheme in blocks of 8, held-out bound at equal forward tokens, nats per "
                              "token: {lit8_chain} against {rand8_chain} for random masking decoded in blocks of 8 on "
                              "the chain (its own {chain_valid_nll}), {lit8_text} against {rand8_text} on text; it "
                              "runs {lit8_tokens} forward tokens per training sequence against {rand_tokens} (L = "
                              "{seq_len}). The book's block-causal variant in blocks of 4: {chain_bw4_bound} against "
                              "{chain_random_b4_bound} on the chain, {text_bw4_bound} against {text_random_b4_bound} "
                              "on text.", ev.blockwise_training,
                    seeded=("lit8_chain", "rand8_chain", "lit8_text", "rand8_text", "chain_bw4_bound",
                            "chain_random_b4_bound", "text_bw4_bound", "text_random_b4_bound", "chain_valid_nll")),),
          deciding="lit8_chain",
          contrasts=(("lit8_chain", "rand8_chain",
                      "bound, B = 8: paper's scheme - random"),
                     ("chain_random_b4_bound", "chain_bw4_bound",
                      "bound, B = 4: random - block-causal"),
                     ("lit8_text", "rand8_text", "text bound, B = 8: paper's - random"),
                     ("text_random_b4_bound", "text_bw4_bound", "text bound, B = 4: random - block-causal"))),
    Claim(17, "3.3", "Sampling the first few adjacent masks together is the most reliable of all parallel "
                     "sampling strategies (the assumption behind Metrics 1-3 and Table 2).",
          "does not hold", "adjacent masks are the most confident one at a time, but decoded together they cost the "
                           "most: four adjacent masks per step give a far worse perplexity than four scattered ones, "
                           "at the same diversity, with the exact denoiser and with models trained on the chain and "
                           "on text",
          ("exact", "trained", "text"), "exact",
          (Evidence("generation_order", "Exact denoiser, {adj_k} masks per step: the most confident masks, which sit "
                                        "next to the decoded text (margin order), give true PPL {adj_margin_k}; a "
                                        "random order {adj_random_k}; both at a token entropy of at least "
                                        "{adj_order_h} (the chain's {adj_order_h_language}).", ev.adjacent_exact),
           Evidence("blocks", "Four masks per step, exact denoiser on the chain: the next four adjacent masks "
                              "(blocks of 4) give true PPL {adj_exact}, four masks scattered at random over the "
                              "sequence {sc_exact}, both at a token entropy of at least {adj_h} (the chain's "
                              "{chain_h}). The random-masking model: {adj_trained} against {sc_trained} on the chain, "
                              "{adj_text} against {sc_text} on text (entropy at least {text_min_h}; the text's "
                              "{text_h}).", ev.adjacent_blocks,
                    seeded=("adj_trained", "sc_trained", "adj_text", "sc_text", "text_min_h"))),
          deciding="adj_exact",
          contrasts=(("adj_trained", "sc_trained",
                      "PPL: 4 adjacent - 4 scattered masks"),
                     ("adj_text", "sc_text", "text PPL: 4 adjacent - 4 scattered"))),
    Claim(18, "3.3", "Parallel sampling can put the same token at two adjacent positions, and the joint "
                     "probability then drops sharply.",
          "holds loosely", "all-at-once decoding repeats a token at adjacent positions more often than the language "
                           "does, but on this chain the repeats carry little of the fall of the joint probability: a "
                           "repeated pair costs less than another parallel pair; how much a repeat costs depends on "
                           "how often the language itself repeats its frequent tokens",
          ("exact",), "exact",
          (Evidence("parallel_sampling", "Every mask decoded at once from the exact marginals: {rep_decoded} of "
                                         "adjacent pairs repeat a token, against {rep_language} in the language; a "
                                         "repeated pair has a mean true log-probability of {rep_log_p} (a repeat of "
                                         "the language's own {rep_language_log_p}), any other pair {other_log_p}; "
                                         "repeats carry a share {rep_extra_share} of the extra negative "
                                         "log-likelihood of decoding all at once.", ev.repeats),),
          deciding="rep_decoded"),
    Claim(19, "3.4.2", "Training on all 2^n - 1 masking patterns is mostly redundant once inference is nearly left "
                       "to right.",
          "holds", "at equal forward tokens, training only on the patterns left-to-right inference meets gives a "
                   "better left-to-right likelihood than random masking with each of three seeds, on the chain (by "
                   "0.07 to 0.26 nats per token) and on text by far",
          ("trained", "text"), "trained",
          (Evidence("blocks", "Held-out NLL of left-to-right decoding at equal forward tokens, nats per token: a "
                              "model trained on left-to-right patterns only {chain_l2r} (the chain's own "
                              "{chain_own}), the random-masking model {chain_rand_l2r}; on text {text_l2r} against "
                              "{text_rand_l2r} (the judge's {text_judge}).", ev.redundancy,
                    seeded=("chain_l2r", "chain_rand_l2r", "text_l2r", "text_rand_l2r", "text_judge", "chain_own")),),
          deciding="chain_l2r",
          contrasts=(("chain_rand_l2r", "chain_l2r",
                      "left-to-right NLL: random - left to right"),
                     ("text_rand_l2r", "text_l2r", "text left-to-right NLL: random - left to right"))),
)
