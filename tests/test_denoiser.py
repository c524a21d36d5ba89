"""Tests of maskdiff_tutor.denoiser: shapes, positions (learned and rotary), time conditioning,
attention masks, parameter counts against a hand count, save/load, and every argument check."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from maskdiff_tutor.denoiser import PRESETS, Denoiser, DenoiserConfig, load_denoiser, save_denoiser

V, L_MAX = 11, 8  # a small vocabulary (mask = 10) and maximum length
MASK = V - 1


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _model(seed: int = 0, **overrides) -> Denoiser:
    fields = dict(vocab_size=V, max_seq_len=L_MAX, d_model=16, n_layers=2, n_heads=2)
    torch.manual_seed(seed)
    return Denoiser(DenoiserConfig(**{**fields, **overrides})).eval()


def _tokens(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (batch, length), generator=_gen(seed))


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("preset", ["toy", "tiny"])
@pytest.mark.parametrize("length", [L_MAX, 5, 1])
def test_output_shape_for_presets(preset, length):
    model = Denoiser(DenoiserConfig.preset(preset, vocab_size=V, max_seq_len=L_MAX)).eval()
    with torch.no_grad():
        logits = model(_tokens(3, length))
    assert logits.shape == (3, length, V) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_presets_set_the_documented_sizes():
    for name, sizes in PRESETS.items():
        config = DenoiserConfig.preset(name, vocab_size=V, max_seq_len=L_MAX)
        assert (config.d_model, config.n_layers, config.n_heads) == (sizes["d_model"], sizes["n_layers"],
                                                                     sizes["n_heads"])
    assert DenoiserConfig.preset("toy", vocab_size=V, max_seq_len=L_MAX, n_layers=1).n_layers == 1


@pytest.mark.parametrize("rotary", [False, True])
def test_shorter_sequences_use_the_leading_positions(rotary):
    # an input shorter than max_seq_len is a valid input; its logits are finite and of length L
    model = _model(rotary=rotary)
    x = _tokens(2, 4)
    with torch.no_grad():
        assert model(x).shape == (2, 4, V)
    assert (model.positions is None) == rotary
    assert hasattr(model, "rotary_cos") == rotary


def test_token_ids_must_be_int64_the_packages_one_token_dtype():
    model, x = _model(), _tokens(2, 6)
    for other in (torch.int32, torch.int16, torch.uint8):
        with pytest.raises(ValueError, match=r"x_t must be a torch.long \(int64\) tensor of shape \(B, L\)"):
            model(x.to(other))


def test_empty_batch():
    with torch.no_grad():
        assert _model()(torch.zeros(0, 4, dtype=torch.long)).shape == (0, 4, V)


# ----------------------------------------------------------------------------- positions


def test_rotary_positions_cannot_tell_positions_apart_on_a_fully_masked_input():
    # Every token is the mask and rotary positions are relative: every attention output is the
    # same average of identical values, so every position gets the same logits (up to rounding).
    x = torch.full((2, L_MAX), MASK)
    with torch.no_grad():
        rotary = _model(rotary=True)(x)
        learned = _model(rotary=False)(x)
    torch.testing.assert_close(rotary, rotary[:, :1].expand_as(rotary), rtol=0, atol=1e-5)
    # learned absolute positions do tell them apart
    assert (learned - learned[:, :1]).abs().amax() > 1e-2


def test_rotary_positions_matter_with_an_anchor():
    # With one unmasked token the relative offset to it differs per position: logits differ.
    # (The initial weights, std 0.02, make attention nearly uniform: sharpen it first.)
    x = torch.full((1, L_MAX), MASK)
    x[0, 0] = 3
    model = _model(rotary=True)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv.weight.mul_(50)
        out = model(x)
    assert (out[:, 1:] - out[:, 1:2]).abs().amax() > 1e-3


def test_learned_positions_shift_the_logits():
    model = _model()
    x = _tokens(1, 6)
    with torch.no_grad():
        before = model(x)
        model.positions.weight.add_(0.5 * torch.randn(model.positions.weight.shape, generator=_gen(3)))
        after = model(x)
    assert (before - after).abs().amax() > 1e-3


# ----------------------------------------------------------------------------- time conditioning


def test_time_conditioning_uses_t():
    model = _model(time_conditioning=True)
    x = _tokens(2, 5)
    with torch.no_grad():
        a = model(x, torch.tensor([0.1, 0.9]))
        b = model(x, torch.tensor([0.1, 0.3]))
    assert a.shape == (2, 5, V)
    assert torch.equal(a[0], b[0])  # the first sequence's time did not change
    assert (a[1] - b[1]).abs().amax() > 1e-4


def test_time_conditioning_requires_t():
    with pytest.raises(ValueError, match="t is required"):
        _model(time_conditioning=True)(_tokens(2, 5))


def test_no_time_conditioning_refuses_t():
    with pytest.raises(ValueError, match="t was given"):
        _model()(_tokens(2, 5), torch.tensor([0.5, 0.5]))


@pytest.mark.parametrize("t", [torch.tensor([0.5]), torch.tensor(0.5), torch.tensor([[0.5, 0.5]])])
def test_t_of_the_wrong_shape_raises(t):
    with pytest.raises(ValueError, match=r"t must have shape \(B,\)"):
        _model(time_conditioning=True)(_tokens(2, 5), t)


# ----------------------------------------------------------------------------- attention masks


def _block_diagonal(length: int, split: int) -> torch.Tensor:
    mask = torch.zeros(length, length, dtype=torch.bool)
    mask[:split, :split] = True
    mask[split:, split:] = True
    return mask


@pytest.mark.parametrize("rotary", [False, True])
def test_block_diagonal_mask_isolates_the_blocks(rotary):
    model = _model(rotary=rotary)
    x = _tokens(3, 6, seed=1)
    y = x.clone()
    y[:, 3:] = (x[:, 3:] + 1 + torch.randint(0, V - 1, (3, 3), generator=_gen(2))) % V  # every block-2 token changes
    mask = _block_diagonal(6, 3)
    with torch.no_grad():
        a, b = model(x, attn_mask=mask), model(y, attn_mask=mask)
        a_full, b_full = model(x), model(y)
    assert torch.equal(a[:, :3], b[:, :3])  # block 1 never sees block 2: exactly the same
    assert (a[:, 3:] - b[:, 3:]).abs().amax() > 1e-3  # block 2 did change
    # without the mask block 1 does see block 2
    assert (a_full[:, :3] - b_full[:, :3]).abs().amax() > 1e-4


def test_block_diagonal_mask_equals_running_the_blocks_separately_with_learned_positions():
    # Block 1 is a prefix: with learned positions its outputs equal those of the prefix alone.
    model = _model()
    x = _tokens(2, 6)
    with torch.no_grad():
        masked = model(x, attn_mask=_block_diagonal(6, 3))
        prefix = model(x[:, :3])
    torch.testing.assert_close(masked[:, :3], prefix, rtol=0, atol=1e-5)


def test_batched_attn_mask_shape():
    model, x = _model(), _tokens(2, 6)
    per_sequence = torch.stack([_block_diagonal(6, 3), torch.ones(6, 6, dtype=torch.bool)]).unsqueeze(1)  # (2, 1, 6, 6)
    with torch.no_grad():
        out = model(x, attn_mask=per_sequence)
        torch.testing.assert_close(out[0], model(x[:1], attn_mask=_block_diagonal(6, 3))[0], rtol=0, atol=1e-5)
        torch.testing.assert_close(out[1], model(x[1:])[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("rotary", [False, True])
def test_full_true_mask_equals_no_mask(rotary):
    model, x = _model(rotary=rotary), _tokens(3, 7)
    with torch.no_grad():
        torch.testing.assert_close(model(x, attn_mask=torch.ones(7, 7, dtype=torch.bool)), model(x),
                                   rtol=0, atol=1e-6)


def test_causal_mask_makes_earlier_positions_ignore_later_ones():
    model, x = _model(), _tokens(2, 6)
    y = x.clone()
    y[:, -1] = (x[:, -1] + 1) % V
    causal = torch.tril(torch.ones(6, 6, dtype=torch.bool))
    with torch.no_grad():
        a, b = model(x, attn_mask=causal), model(y, attn_mask=causal)
    assert torch.equal(a[:, :-1], b[:, :-1])
    assert (a[:, -1] - b[:, -1]).abs().amax() > 1e-3


def test_attn_mask_of_the_wrong_shape_raises():
    with pytest.raises(ValueError, match="attn_mask"):
        _model()(_tokens(2, 6), attn_mask=torch.ones(5, 5, dtype=torch.bool))


# ----------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("rotary", [False, True])
@pytest.mark.parametrize("time_conditioning", [False, True])
def test_num_parameters_against_a_hand_count(tie, rotary, time_conditioning):
    D, H, n_layers, r, vocab, l_max = 8, 2, 3, 2, 13, 6
    model = Denoiser(DenoiserConfig(vocab_size=vocab, max_seq_len=l_max, d_model=D, n_layers=n_layers, n_heads=H,
                                    mlp_ratio=r, rotary=rotary, time_conditioning=time_conditioning,
                                    tie_embeddings=tie))
    per_block = (2 * D + 2 * D  # two LayerNorms (weight and bias)
                 + 3 * D * D + D * D  # qkv and output projections, no bias
                 + (D * r * D + r * D) + (r * D * D + D))  # MLP with biases
    time = (D * D + D) * 2 if time_conditioning else 0
    non_embedding = n_layers * per_block + 2 * D + time + (0 if tie else vocab * D)  # + final LayerNorm (+ head)
    embeddings = vocab * D + (0 if rotary else l_max * D)
    assert model.num_parameters(non_embedding=True) == non_embedding
    assert model.num_parameters() == non_embedding + embeddings
    # and against the module's own unique parameters, counted by a different route
    unique = {id(p): p.numel() for p in model.parameters()}
    assert model.num_parameters() == sum(unique.values())


def test_tied_embeddings_share_one_tensor():
    tied, untied = _model(tie_embeddings=True), _model(tie_embeddings=False)
    assert tied.head.weight is tied.embed.weight
    assert untied.head.weight is not untied.embed.weight


# ----------------------------------------------------------------------------- save and load


@pytest.mark.parametrize("overrides", [dict(), dict(rotary=True), dict(tie_embeddings=False),
                                       dict(time_conditioning=True)], ids=["default", "rotary", "untied", "time"])
def test_save_load_round_trip(tmp_path, overrides):
    model = _model(seed=4, **overrides)
    with torch.no_grad():  # move the weights away from their initial values
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=_gen(5)))
    directory = save_denoiser(model, tmp_path / "nested" / "model")
    assert (directory / "config.json").is_file() and (directory / "model.safetensors").is_file()
    loaded = load_denoiser(directory).eval()
    assert loaded.config == model.config
    assert json.loads((directory / "config.json").read_text()) == dataclasses.asdict(model.config)
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for name in original:
        assert torch.equal(original[name], restored[name]), name
    if model.config.tie_embeddings:
        assert loaded.head.weight is loaded.embed.weight
    x = _tokens(3, 6)
    args = (torch.tensor([0.2, 0.5, 0.9]),) if model.config.time_conditioning else ()
    with torch.no_grad():
        assert torch.equal(model(x, *args), loaded(x, *args))


def _saved(tmp_path) -> tuple:
    directory = save_denoiser(_model(), tmp_path / "m")
    return directory, json.loads((directory / "config.json").read_text())


def test_load_with_a_different_width_raises(tmp_path):
    directory, fields = _saved(tmp_path)
    (directory / "config.json").write_text(json.dumps({**fields, "d_model": 32}))
    with pytest.raises(ValueError, match="does not match.*shapes differ"):
        load_denoiser(directory)


@pytest.mark.parametrize("n_layers", [1, 3])
def test_load_with_a_different_depth_raises(tmp_path, n_layers):
    directory, fields = _saved(tmp_path)
    (directory / "config.json").write_text(json.dumps({**fields, "n_layers": n_layers}))
    with pytest.raises(ValueError, match="does not match.*(missing|unexpected)"):
        load_denoiser(directory)


def test_load_with_an_unknown_field_raises(tmp_path):
    directory, fields = _saved(tmp_path)
    (directory / "config.json").write_text(json.dumps({**fields, "n_experts": 4}))
    with pytest.raises(ValueError, match=r"unknown fields \['n_experts'\]"):
        load_denoiser(directory)


def test_load_with_a_bad_config_value_raises(tmp_path):
    directory, fields = _saved(tmp_path)
    (directory / "config.json").write_text(json.dumps({**fields, "dropout": 1.5}))
    with pytest.raises(ValueError, match="dropout"):
        load_denoiser(directory)


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors"])
def test_load_with_a_missing_file_raises(tmp_path, missing):
    directory, _ = _saved(tmp_path)
    (directory / missing).unlink()
    with pytest.raises(ValueError, match=f"has no {missing}"):
        load_denoiser(directory)


def test_load_from_a_missing_directory_raises(tmp_path):
    with pytest.raises(ValueError, match="has no config.json"):
        load_denoiser(tmp_path / "nowhere")


# ----------------------------------------------------------------------------- input errors


def test_sequence_longer_than_max_seq_len_raises():
    with pytest.raises(ValueError, match="max_seq_len"):
        _model()(_tokens(1, L_MAX + 1))


@pytest.mark.parametrize("bad", [-1, V])
def test_ids_outside_the_vocabulary_raise(bad):
    x = _tokens(2, 5)
    x[1, 2] = bad
    with pytest.raises(ValueError, match="outside .*vocab_size"):
        _model()(x)


@pytest.mark.parametrize(("model_device", "x_device"), [("meta", "cpu"), ("cpu", "meta")])
@pytest.mark.parametrize("call", ["forward", "step"])
def test_tokens_on_another_device_than_the_parameters_are_refused_naming_both(model_device, x_device, call):
    model, x = _model().to(model_device), _tokens(2, 5).to(x_device)
    match = (rf"^x_t is on {x_device} but the model's parameters are on {model_device}; move the tokens to the "
             rf"model's device \(x_t\.to\('{model_device}'\)\)$")
    with pytest.raises(ValueError, match=match):
        model(x) if call == "forward" else model.step(x, torch.arange(5, device=x_device))


@pytest.mark.parametrize("x", [torch.zeros(2, 5), torch.zeros(2, 5, dtype=torch.bool), torch.zeros(5, dtype=torch.long),
                               torch.zeros(1, 2, 5, dtype=torch.long), [[0, 1, 2]]],
                         ids=["float", "bool", "1d", "3d", "list"])
def test_wrong_dtype_or_rank_raises(x):
    with pytest.raises(ValueError, match=r"x_t must be a torch.long \(int64\) tensor of shape \(B, L\)"):
        _model()(x)


# ----------------------------------------------------------------------------- config errors


@pytest.mark.parametrize("name", ["vocab_size", "max_seq_len", "d_model", "n_layers", "n_heads", "mlp_ratio"])
@pytest.mark.parametrize("value", [0, -2, 2.0, True])
def test_bad_sizes_raise(name, value):
    fields = dict(vocab_size=V, max_seq_len=L_MAX, d_model=16, n_layers=2, n_heads=2)
    with pytest.raises(ValueError, match=rf"^{name} must be an int >= 1; got {value!r}$"):
        DenoiserConfig(**{**fields, name: value})


@pytest.mark.parametrize("d_model, n_heads", [(16, 3), (12, 5), (12, 4)], ids=["not-dividing", "not-dividing-2",
                                                                              "odd-head-size"])
def test_heads_must_divide_d_model_into_an_even_head_size(d_model, n_heads):
    with pytest.raises(ValueError, match="n_heads"):
        DenoiserConfig(vocab_size=V, d_model=d_model, n_heads=n_heads)


@pytest.mark.parametrize("dropout", [-0.1, 1.0, 2.0, float("nan")])
def test_dropout_out_of_range_raises(dropout):
    with pytest.raises(ValueError, match=rf"^dropout must be a finite number in \[0, 1\); got {dropout!r}$"):
        DenoiserConfig(vocab_size=V, dropout=dropout)


def test_unknown_preset_raises():
    with pytest.raises(ValueError, match="preset must be one of .*'huge'"):
        DenoiserConfig.preset("huge", vocab_size=V, max_seq_len=L_MAX)


def test_dropout_is_active_in_training_mode_only():
    model = _model(dropout=0.5)
    x = _tokens(2, 6)
    with torch.no_grad():
        model.eval()
        assert torch.equal(model(x), model(x))
        model.train()
        torch.manual_seed(0)
        a = model(x)
        torch.manual_seed(1)
        b = model(x)
    assert (a - b).abs().amax() > 1e-4
