"""The KV-cached semi-autoregressive sampler reproduces the uncached one exactly."""

from __future__ import annotations

import pytest
import torch

from maskdiff_tutor import block_causal, decoders
from maskdiff_tutor.denoiser import Denoiser, DenoiserConfig

MASK = 20


def model(rotary=False, seed=0):
    torch.manual_seed(seed)
    return Denoiser(DenoiserConfig(vocab_size=MASK + 1, max_seq_len=64, d_model=32, n_layers=3, n_heads=2,
                                   rotary=rotary)).eval()


@pytest.mark.parametrize("rotary", [False, True])
@pytest.mark.parametrize("prompt_length", [0, 1, 5])
@pytest.mark.parametrize("schedule", [dict(tokens_per_step=1), dict(tokens_per_step=3),
                                      dict(tokens_per_step=None, threshold=0.08)])
def test_cached_equals_uncached(rotary, prompt_length, schedule):
    net = model(rotary)
    prompt = torch.randint(0, MASK, (3, prompt_length), generator=torch.Generator().manual_seed(1))
    runs = [block_causal.generate_block_causal(net, prompt, 24, MASK, 6, use_cache=cache, **schedule)
            for cache in (True, False)]
    assert torch.equal(runs[0].tokens, runs[1].tokens)
    assert torch.equal(runs[0].order, runs[1].order)
    assert runs[0].nfe == runs[1].nfe
    torch.testing.assert_close(runs[0].confidence, runs[1].confidence, rtol=1e-5, atol=1e-7, equal_nan=True)


def test_sampling_with_the_same_generator_is_identical_with_and_without_cache():
    net = model()
    prompt = torch.randint(0, MASK, (4, 3), generator=torch.Generator().manual_seed(2))
    runs = [block_causal.generate_block_causal(net, prompt, 16, MASK, 4, use_cache=cache, temperature=1.0,
                                                 generator=torch.Generator().manual_seed(0)) for cache in (True, False)]
    assert torch.equal(runs[0].tokens, runs[1].tokens)


def test_blocks_are_decoded_in_order_and_the_prompt_is_kept():
    net = model()
    prompt = torch.tensor([[3, 4]])
    out = block_causal.generate_block_causal(net, prompt, 12, MASK, 4, tokens_per_step=2)
    assert out.tokens[0, :2].tolist() == [3, 4] and (out.tokens != MASK).all()
    blocks = out.order[0, 2:].view(3, 4)
    assert (blocks[:-1].max(-1).values < blocks[1:].min(-1).values).all()
    assert out.nfe == 6


@pytest.mark.parametrize("kwargs,match", [
    (dict(gen_length=10, block_length=4), "divisible"),
    (dict(gen_length=8, block_length=4, tokens_per_step=5), "tokens_per_step"),
    (dict(gen_length=8, block_length=4, tokens_per_step=2, threshold=0.5), "at most one"),
    (dict(gen_length=8, block_length=4, threshold=2.0), "threshold"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        block_causal.generate_block_causal(model(), torch.tensor([[1]]), mask_id=MASK, **kwargs)


def test_prompt_with_the_mask_is_refused():
    with pytest.raises(ValueError, match="prompt"):
        block_causal.generate_block_causal(model(), torch.tensor([[1, MASK]]), 4, MASK, 4)


def test_step_refuses_time_conditioned_models():
    net = Denoiser(DenoiserConfig(vocab_size=5, max_seq_len=8, d_model=16, n_layers=1, n_heads=2,
                                  time_conditioning=True))
    with pytest.raises(ValueError, match="time"):
        net.step(torch.zeros(1, 3, dtype=torch.long), torch.arange(3))


def _one_layer():
    torch.manual_seed(0)
    return Denoiser(DenoiserConfig(vocab_size=MASK + 1, max_seq_len=64, d_model=32, n_layers=1, n_heads=2)).eval()


@pytest.mark.parametrize("layers_equal", [True, False])
def test_literal_scheme_decoding_equals_block_causal_only_for_one_layer(layers_equal):
    # one layer: the noisy block sees the same keys either way; deeper, the prefix itself sees the block
    net = _one_layer() if layers_equal else model()
    prompt = torch.randint(0, MASK, (3, 2), generator=torch.Generator().manual_seed(1))
    runs = [block_causal.generate_block_causal(net, prompt, 12, MASK, 4, use_cache=False, causal_prefix=causal)
            for causal in (True, False)]
    close = torch.allclose(runs[0].confidence, runs[1].confidence, atol=1e-6, equal_nan=True)
    assert close == layers_equal
    if layers_equal:
        assert torch.equal(runs[0].tokens, runs[1].tokens)


def test_literal_scheme_cannot_be_cached():
    with pytest.raises(ValueError, match="use_cache=True needs causal_prefix=True"):
        block_causal.generate_block_causal(model(), torch.tensor([[1]]), 4, MASK, 4, causal_prefix=False)


def test_mask_id_outside_the_vocabulary_is_refused():
    with pytest.raises(ValueError, match="mask_id"):
        block_causal.generate_block_causal(model(), torch.tensor([[1]]), 4, MASK + 1, 4)


class EditsItsInputs:
    """A block-causal model that overwrites its tokens with the mask and its positions with 0, in
    place, after computing its output."""

    def __init__(self, net):
        self.net, self.config = net, net.config

    def __call__(self, x, *, attn_mask, position_ids):
        logits = self.net(x, attn_mask=attn_mask, position_ids=position_ids)
        x.fill_(MASK), position_ids.fill_(0)
        return logits

    def step(self, x, position_ids, past_kv=None):
        out = self.net.step(x, position_ids, past_kv)
        x.fill_(MASK), position_ids.fill_(0)
        return out


@pytest.mark.parametrize("use_cache", [True, False])
def test_a_model_that_edits_its_inputs_changes_nothing(use_cache):
    net, prompt = model(), torch.tensor([[3, 4], [5, 6]])
    runs = [block_causal.generate_block_causal(m, prompt, 8, MASK, 4, use_cache=use_cache, tokens_per_step=2)
            for m in (net, EditsItsInputs(net))]
    assert torch.equal(runs[0].tokens, runs[1].tokens) and torch.equal(runs[0].order, runs[1].order)
    assert torch.equal(prompt, torch.tensor([[3, 4], [5, 6]]))


def test_a_model_on_another_device_than_the_prompt_is_refused_naming_both():
    with pytest.raises(ValueError, match=r"^prompt is on cpu but the model's parameters are on meta; move the prompt "
                                         r"to the model's device \(prompt.to\('meta'\)\)$"):
        block_causal.generate_block_causal(model().to("meta"), torch.tensor([[1]]), 4, MASK, 4)


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("returns, match", [
    (lambda logits: logits.long(), r"^the denoiser must return floating-point logits .* got dtype torch.int64$"),
    (lambda logits: logits.to("meta"), r"^the denoiser returned logits on meta for tokens on cpu"),
])
def test_logits_of_another_dtype_or_device_are_refused(use_cache, returns, match):
    net = model()

    class Returns:
        config = net.config

        def __call__(self, x, *, attn_mask, position_ids):
            return returns(net(x, attn_mask=attn_mask, position_ids=position_ids))

        def step(self, x, position_ids, past_kv=None):
            logits, kv = net.step(x, position_ids, past_kv)
            return returns(logits), kv
    with pytest.raises(ValueError, match=match):
        block_causal.generate_block_causal(Returns(), torch.tensor([[1]]), 4, MASK, 4, use_cache=use_cache)


@pytest.mark.parametrize("score", ["confidence", None])
def test_a_score_that_is_not_a_function_is_refused_naming_score(score):
    with pytest.raises(TypeError, match=r"^score must be a function \(prediction, generator\) -> scores \(B, n\), "
                                        r"such as decoding\.confidence, .*decoding\.leftmost; got "):
        block_causal.generate_block_causal(model(), torch.tensor([[1]]), 4, MASK, 4, score=score)


def test_the_decoders_module_no_longer_offers_the_block_causal_decoder():
    """The block-causal decoder lives in ``block_causal`` alone (one copy of each sampler)."""
    assert not {"generate_block_causal", "BlockCausalModel", "BlockCausalReader"} & set(dir(decoders))
