"""``maskdiff_tutor.hub`` on small models saved locally: each family's adapter, the refusals, and
the package's decoders running on the result. Native masked LMs are built from configs here;
the remote-code families are folders this file writes (a config with ``auto_map`` and
``tests/hub_models/modeling_tiny.py`` with the family's interface), loaded with
``trust_remote_code=True`` as a hub model's own code is. Nothing touches the network."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import shutil
import socket
import sys
import threading
import time

import pytest
import torch

transformers = pytest.importorskip("transformers")
sys.path.insert(0, str(pathlib.Path(__file__).parent))

from hub_models import REMOTE, make_tokenizer, native_model, offline, remote_folder  # noqa: E402,F401 (offline: autouse)

from maskdiff_tutor import decoders, decoding, hub, hub_files  # noqa: E402


@pytest.fixture(params=sorted(REMOTE))
def remote(request, tmp_path):
    family = request.param
    extra, specials = REMOTE[family]
    return family, remote_folder(tmp_path, family, extra, specials)


def test_each_remote_family_loads_as_a_denoiser_whose_position_i_predicts_token_i(remote):
    family, folder = remote
    model = hub.load(folder, trust_remote_code=True)
    assert (model.family, model.mask_id, model.vocab_size, model.max_length) == (family, 15, 16, 24)
    assert model.dtype == torch.float32 and model.device == torch.device("cpu")
    assert 12 in model.eos_ids
    x = torch.tensor([[3, 15, 15, 15, 15, 15]])
    logits = model(x)
    assert logits.shape == (1, 6, 16) and logits.dtype == torch.float32
    assert logits[0, 1].argmax() == 4  # one more than the token before it, at the right place
    # greedy left to right, one token per step: each token one more than the one before it
    # (in blocks of 4, BD3-LM's block size: its adapter needs the blocks before the current one clean)
    out = decoders.generate(model, torch.tensor([[2]]), 8, model.mask_id, tokens_per_step=1, score=decoding.leftmost,
                            temperature=0.0, block_length=4)
    assert out.tokens.tolist() == [[2, 3, 4, 5, 6, 7, 8, 9, 10]]


def test_dream_logits_are_shifted_back_and_no_2d_mask_is_passed(tmp_path):
    extra, specials = REMOTE["dream"]
    model = hub.load(remote_folder(tmp_path, "dream", extra, specials), trust_remote_code=True)
    x = torch.tensor([[7, 15, 2, 15]])
    raw = model.model(input_ids=x).logits  # position i: the prediction for i + 1
    assert raw[0, 0].argmax() == 8 and model(x)[0, 1].argmax() == 8
    assert model(x)[0, 3].argmax() == 3


def test_remote_code_runs_only_when_asked(remote):
    family, folder = remote
    with pytest.raises(ValueError, match=r"classes come from its repository \(modeling_tiny.py\); "
                                         r"load\(\.\.\., trust_remote_code=True\) runs that code, if you trust it"):
        hub.load(folder)


def test_remote_code_on_transformers_5_is_refused_with_the_pin(remote, monkeypatch):
    family, folder = remote
    # the module hub imports (transformers 4.x replaces its entry in sys.modules once models are built)
    monkeypatch.setattr(sys.modules["transformers"], "__version__", "5.2.0")
    with pytest.raises(ImportError, match=r"needs transformers 4.x .* transformers 5.2.0 is installed: "
                                           r"pip install \"maskdiff-tutor\[hub\]\""):
        hub.load(folder, trust_remote_code=True)


def test_an_unguarded_flash_attn_import_gets_a_message_that_says_what_to_do(tmp_path):
    try:
        import flash_attn  # noqa: F401
        pytest.skip("flash-attn is installed here")
    except ImportError:
        pass
    extra, specials = REMOTE["mdlm"]
    folder = remote_folder(tmp_path, "mdlm-flash", extra, specials)
    message = r"imports flash-attn, which needs a CUDA GPU: pip install flash-attn"
    with pytest.raises(ImportError, match=message) as caught:
        hub.load(folder, trust_remote_code=True)
    # the error transformers raised on the model's import stays in the traceback, as the cause
    cause = caught.value.__cause__
    assert isinstance(cause, ImportError) and "flash_attn" in str(cause) and "CUDA GPU" not in str(cause)


def test_llada_without_a_mask_id_in_its_config_uses_llada_s_and_checks_it(tmp_path):
    extra, specials = REMOTE["llada"]
    folder = remote_folder(tmp_path, "llada", {k: v for k, v in extra.items() if k != "mask_token_id"}, specials)
    with pytest.raises(ValueError, match=rf"its mask id {hub.LLADA_MASK_ID} lies outside its 16 logits"):
        hub.load(folder, trust_remote_code=True)


@pytest.mark.parametrize("kind", ["bert", "roberta", "modernbert"])
def test_native_masked_lms_load_without_remote_code(tmp_path, kind):
    folder = native_model(tmp_path, kind)
    model = hub.load(folder)
    assert (model.family, model.mask_id, model.vocab_size) == ("masked-lm", 15, 16)
    assert model.max_length == (34 if kind == "roberta" else 32) and 13 in model.eos_ids
    x = torch.tensor([[12, 3, 15, 15, 5], [12, 1, 2, 15, 15]])
    direct = transformers.AutoModelForMaskedLM.from_pretrained(folder).eval()(
        input_ids=x, attention_mask=torch.ones_like(x)).logits
    torch.testing.assert_close(model(x), direct)
    assert model.prompt_ids("w3 w4").tolist() == [[12, 3, 4]]  # [CLS] then the words, no [SEP]
    out = decoders.generate(model, model.prompt_ids("w3 w4"), 6, model.mask_id, tokens_per_step=2,
                            generator=torch.Generator().manual_seed(0))
    assert out.tokens.shape == (1, 9) and not (out.tokens == model.mask_id).any()


def test_a_prompt_longer_than_the_model_takes_is_refused(tmp_path):
    model = hub.load(native_model(tmp_path, "bert"))
    with pytest.raises(ValueError, match=r"a sequence of 40 tokens is longer than .* takes \(32\); shorten"):
        model(torch.zeros(1, 40, dtype=torch.long))


def test_a_model_without_a_mask_token_is_refused(tmp_path):
    folder = native_model(tmp_path, "bert")
    no_mask = make_tokenizer({"[CLS]": "cls_token", "[SEP]": "sep_token", "[PAD]": "pad_token", "x15": None})
    no_mask.save_pretrained(folder)
    with pytest.raises(ValueError, match=r"has no mask token \(its tokenizer defines none\), so it cannot denoise"):
        hub.load(folder)


def test_an_unsupported_model_names_the_families(tmp_path):
    config = transformers.GPT2Config(vocab_size=16, n_embd=16, n_layer=1, n_head=2, n_positions=32)
    folder = tmp_path / "gpt2"
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    with pytest.raises(ValueError, match=r"model_type 'gpt2'.* is none of the supported families: llada \(LLaDA"):
        hub.load(folder)


def test_missing_models_and_no_network_get_one_clear_message(tmp_path):
    # HF_HUB_OFFLINE is set (the offline fixture): the hub is not asked
    with pytest.raises(OSError, match=r"^no-such-owner/no-such-model is not a local folder, and the Hugging Face Hub "
                                      r"could not be reached to fetch it; connect to the network, or pass a folder "
                                      r"written by save_pretrained \(HF_HUB_OFFLINE is set\)$"):
        hub.load("no-such-owner/no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"is a folder without config.json"):
        hub.load(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"^family must be one of \['bd3lm', 'dream', 'llada', 'masked-lm', 'mdlm'\]"):
        hub.load(native_model(tmp_path, "bert"), family="gpt")


def test_an_unreadable_config_is_refused_with_the_parse_error_as_its_cause(tmp_path):
    folder = native_model(tmp_path, "bert")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config.json: not a readable model config \(Expecting prop") as caught:
        hub.load(folder)
    assert isinstance(caught.value.__cause__, json.JSONDecodeError)


def test_the_families_are_one_class_each_in_the_order_they_are_recognised():
    assert list(hub.FAMILIES) == ["llada", "dream", "mdlm", "bd3lm", "masked-lm"]
    assert [type(f) for f in hub.FAMILIES.values()] == [hub.LLaDA, hub.Dream, hub.MDLM, hub.BD3LM, hub.MaskedLM]
    assert all(name == family.name for name, family in hub.FAMILIES.items())
    assert [f.remote_code for f in hub.FAMILIES.values()] == [True, True, True, True, False]


def test_a_new_family_is_one_class(tmp_path, monkeypatch):
    class Reversed(hub.RemoteCodeFamily):  # LLaDA's interface with its sequences read backwards, its mask at 14
        name = "reversed"
        description = "reversed LLaDA (a test family)"
        model_types = ("llada",)
        auto_class = "AutoModel"

        def mask_id(self, name, config, tokenizer):
            return 14

        def forward(self, model, x):
            return model(input_ids=x.flip(1)).logits.flip(1)

    monkeypatch.setitem(hub.FAMILIES, "reversed", Reversed())
    extra, specials = REMOTE["llada"]
    folder = remote_folder(tmp_path, "llada", extra, specials)
    with pytest.raises(ValueError, match=r"is a reversed LLaDA \(a test family\) model whose classes come from"):
        hub.load(folder, family="reversed")
    model = hub.load(folder, family="reversed", trust_remote_code=True)
    assert (model.family, model.mask_id) == ("reversed", 14)
    # read backwards: each position predicts one more than the token after it (mod 12; the last one, its own)
    assert model(torch.tensor([[15, 5, 15, 9]])).argmax(-1).tolist() == [[6, 4, 10, 10]]


def test_running_out_of_gpu_memory_says_what_to_do(tmp_path, monkeypatch):
    model = hub.load(native_model(tmp_path, "bert"))

    def out_of_memory(*args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(hub.MaskedLM, "forward", out_of_memory)
    with pytest.raises(MemoryError, match=re.escape("ran out of GPU memory on 2 sequences of 5 tokens (on cpu); "
                                                    "pass fewer sequences at a time")) as caught:
        model(torch.zeros(2, 5, dtype=torch.long))
    assert isinstance(caught.value.__cause__, torch.cuda.OutOfMemoryError)


def test_dtype_follows_the_device_and_can_be_overridden(tmp_path):
    assert hub.default_dtype(torch.device("cpu")) == torch.float32
    assert hub.default_dtype(torch.device("mps")) == torch.float16
    model = hub.load(native_model(tmp_path, "bert"), dtype=torch.float64)
    assert model.dtype == torch.float64 and next(model.model.parameters()).dtype == torch.float64
    assert hub.load(native_model(tmp_path / "b", "bert"), dtype=torch.bfloat16).dtype == torch.bfloat16


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64, torch.float8_e4m3fn, "bf16", 32])
def test_a_dtype_a_model_cannot_load_in_is_refused_naming_the_allowed_ones(tmp_path, dtype):
    with pytest.raises(ValueError, match=re.escape("dtype must be one of torch.float32, torch.float64, torch.bfloat16, "
                                                   f"torch.float16, or None for the device's default; got {dtype!r}")):
        hub.load(native_model(tmp_path, "bert"), dtype=dtype)


def test_the_chat_template_is_used_where_the_tokenizer_has_one(tmp_path):
    extra, specials = REMOTE["llada"]
    template = "{% for m in messages %}<|eot_id|> {{ m['content'] }}{% endfor %} <|endoftext|>"
    folder = remote_folder(tmp_path, "llada", extra, specials, chat_template=template)
    model = hub.load(folder, trust_remote_code=True)
    assert model.prompt_ids("w1 w2").tolist() == [[13, 1, 2, 12]]
    assert model.prompt_ids("w1 w2", chat=False).tolist() == [[1, 2]]
    assert model.decode([1, 15]) == ["w1", "<|mdm_mask|>"]


def test_the_nelbo_runs_on_a_hub_model_and_its_monte_carlo_estimate_agrees_with_the_exact_value(tmp_path):
    from maskdiff_tutor import nelbo
    from maskdiff_tutor.schedules import LinearSchedule

    model = hub.load(native_model(tmp_path, "modernbert"), dtype=torch.float64)
    x0 = torch.tensor([[12, 3, 4, 5, 6, 7]])
    exact = float(nelbo.exact_nelbo(model, x0, model.mask_id, LinearSchedule())[0])
    estimate = nelbo.continuous_nelbo(model, x0, LinearSchedule(), model.mask_id, samples=4000,
                                      generator=torch.Generator().manual_seed(0))
    assert exact > 0 and float(estimate.per_sequence[0]) == pytest.approx(exact, rel=0.05)


def _closed_port() -> int:
    """A local port nothing listens on: a connection to it is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def hub_at(monkeypatch):
    """The hub's endpoint set to a local address, the offline switches off: what load does without a network."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def point(endpoint):
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
        return endpoint
    return point


@pytest.mark.parametrize("hub_is", ["refusing connections", "silent"])
def test_a_hub_that_does_not_answer_fails_in_seconds_with_the_clear_message(hub_at, monkeypatch, request, hub_is):
    # without the probe, the hub's client retries five times with back-off (about 25 s)
    if hub_is == "silent":  # accepts connections and never answers
        server = socket.socket()
        request.addfinalizer(server.close)
        server.bind(("127.0.0.1", 0))
        server.listen()
        why = hub_at(f"http://127.0.0.1:{server.getsockname()[1]}") + " did not answer within 0.5 s"
        monkeypatch.setattr(hub_files, "PROBE_SECONDS", 0.5)
    else:
        why = hub_at(f"http://127.0.0.1:{_closed_port()}") + ": Connection refused"
    started = time.monotonic()
    with pytest.raises(OSError, match=r"^no-such-owner/no-such-model is not a local folder, and the Hugging Face Hub "
                                      r"could not be reached to fetch it; connect to the network, or pass a folder "
                                      rf"written by save_pretrained \({re.escape(why)}\)$"):
        hub.load("no-such-owner/no-such-model")
    assert time.monotonic() - started < 10  # a guard against the retries, not a speed test


def test_a_hub_whose_name_lookup_hangs_is_given_up_on_after_the_probe_s_time(monkeypatch):
    from huggingface_hub import utils

    release = threading.Event()

    class Hanging:  # a session whose request never returns, as a name lookup with no DNS server can
        def head(self, *args, **kwargs):
            release.wait(30)

    monkeypatch.setattr(utils, "get_session", lambda: Hanging())
    started = time.monotonic()
    try:
        assert hub_files.hub_unreachable(0.2).endswith("did not answer within 0.2 s")
        assert time.monotonic() - started < 5
    finally:
        release.set()


def _cached_hub_model(tmp_path, monkeypatch, repo: str) -> pathlib.Path:
    """A native model stored in a hub cache at tmp_path/hub as ``repo`` at revision main, the cache set to it;
    returns its snapshot folder."""
    from huggingface_hub import constants
    from transformers.utils import hub as transformers_hub

    owner, name = repo.split("/")
    cache = tmp_path / "hub"
    stored = cache / f"models--{owner}--{name}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (stored / "refs").mkdir(parents=True)
    (stored / "refs" / "main").write_text(commit)
    shutil.copytree(native_model(tmp_path, "bert"), stored / "snapshots" / commit)
    monkeypatch.setattr(transformers_hub, "TRANSFORMERS_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return stored / "snapshots" / commit


def test_a_cached_hub_model_loads_from_the_cache_when_the_hub_does_not_answer(tmp_path, monkeypatch, hub_at):
    hub_at(f"http://127.0.0.1:{_closed_port()}")
    snapshot = _cached_hub_model(tmp_path, monkeypatch, "owner/tiny")
    started = time.monotonic()
    model = hub.load("owner/tiny")
    assert time.monotonic() - started < 10
    assert (model.name, model.family, model.mask_id) == ("owner/tiny", "masked-lm", 15)
    (snapshot / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match=rf"^owner/tiny: no tokenizer files in {re.escape(str(snapshot))} "):
        hub.load("owner/tiny")


@pytest.mark.parametrize("removed", [("tokenizer.json",), ("tokenizer.json", "tokenizer_config.json"),
                                     ("tokenizer_config.json",)])
def test_missing_tokenizer_files_are_named_with_the_folder(tmp_path, removed):
    folder = native_model(tmp_path, "bert")
    for file in removed:
        (folder / file).unlink()
    if "tokenizer.json" in removed:
        message = (f"no tokenizer files in {folder} (a tokenizer needs one of tokenizer.json, vocab.txt, vocab.json, "
                   "tokenizer.model, spiece.model, sentencepiece.bpe.model); save the tokenizer beside the model: "
                   "tokenizer.save_pretrained(folder)")
    else:  # our word-level tokenizer.json is not what BERT's tokenizer class (the model type's) reads
        message = (f"{folder} has tokenizer.json but no tokenizer_config.json, which names the tokenizer class that "
                   "reads it; save the tokenizer beside the model: tokenizer.save_pretrained(folder)")
    with pytest.raises(FileNotFoundError, match=f"^{re.escape(message)}$") as caught:
        hub.load(folder)
    assert isinstance(caught.value.__cause__, ImportError) and "protobuf" in str(caught.value.__cause__)


@pytest.mark.parametrize("keep", [4, 20, 1000, -10])
def test_a_truncated_weights_file_is_named(tmp_path, keep):
    from safetensors import SafetensorError

    folder = native_model(tmp_path, "bert")
    weights = folder / "model.safetensors"
    whole = weights.read_bytes()
    assert hub_files.damaged_weights(folder) == []
    weights.write_bytes(whole[:keep])
    size = len(whole[:keep])
    why = (f"its header promises {len(whole)} bytes, and it holds {size}" if keep < 0
           else f"it holds {size} bytes, fewer than its header's length says")
    with pytest.raises(ValueError, match=f"^{re.escape(f'{weights} is truncated or damaged ({why})')}: download the "
                                         "model again, or save it again with save_pretrained$") as caught:
        hub.load(folder)
    assert isinstance(caught.value.__cause__, SafetensorError)


def test_a_weights_file_whose_header_is_not_json_is_named(tmp_path):
    folder = native_model(tmp_path, "bert")
    weights = folder / "model.safetensors"
    weights.write_bytes((4).to_bytes(8, "little") + b"{{{{" + bytes(16))
    assert hub_files.damaged_weights(folder) == [
        f"{weights} is truncated or damaged (its header is not a safetensors header: Expecting property name "
        "enclosed in double quotes: line 1 column 2 (char 1))"]
    with pytest.raises(ValueError, match=rf"^{re.escape(str(weights))} is truncated or damaged \(its header"):
        hub.load(folder)


@pytest.mark.parametrize(("text", "kind"), [("[1, 2]", "list"), ('"bert"', "string"), ("3", "number"),
                                            ("null", "null")])
def test_a_config_that_is_not_a_json_object_is_named(tmp_path, text, kind):
    folder = native_model(tmp_path, "bert")
    (folder / "config.json").write_text(text)
    with pytest.raises(ValueError, match=f"^{re.escape(str(folder / 'config.json'))}: not a model config: it holds "
                                         f"a JSON {kind}, and config.json holds one JSON object of the model's "
                                         "settings, as save_pretrained writes it$"):
        hub.load(folder)


@pytest.mark.parametrize("shape", [(0, 5), (2, 0), (5,), (1, 2, 3)])
def test_an_empty_batch_or_a_batch_of_another_shape_is_refused(tmp_path, shape):
    model = hub.load(native_model(tmp_path, "modernbert"))
    with pytest.raises(ValueError, match=re.escape("x must be a non-empty batch of token ids of shape (B, L), "
                                                   f"B >= 1 and L >= 1; got {shape}")):
        model(torch.zeros(shape, dtype=torch.long))


def test_prompt_ids_are_on_the_model_s_device_and_x_moves_there_and_back(tmp_path, monkeypatch):
    model = hub.load(native_model(tmp_path, "bert"))
    assert model.prompt_ids("w3 w4").device == torch.device("cpu")
    on_meta = dataclasses.replace(model, device=torch.device("meta"))  # as if the model were on another device
    ids = on_meta.prompt_ids("w3 w4")
    assert ids.device == torch.device("meta") and ids.shape == (1, 3) and ids.dtype == torch.long
    seen = []
    forward = hub.MaskedLM.forward

    x = torch.tensor([[12, 3, 15, 15, 5]])

    def on_the_model_s_device(self, network, moved):
        seen.append(moved.device)
        return forward(self, network, x)  # the model's logits (it runs on the CPU here; a meta tensor holds no ids)

    monkeypatch.setattr(hub.MaskedLM, "forward", on_the_model_s_device)
    logits = on_meta(x)
    assert seen == [torch.device("meta")] and logits.device == x.device
    torch.testing.assert_close(logits, model(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_the_readme_hub_example_runs_with_the_model_on_a_gpu(tmp_path):
    model = hub.load(native_model(tmp_path, "bert"), device="cuda")
    prompt = model.prompt_ids("w3 w4")
    assert prompt.device.type == "cuda"
    out = decoders.generate(model, prompt, 6, model.mask_id, steps=6, block_length=3, temperature=0.0)
    assert out.tokens.device.type == "cuda" and not (out.tokens == model.mask_id).any()
    x = torch.tensor([[12, 3, 15, 15, 5]])  # a CPU batch: logits come back on the CPU
    direct = transformers.AutoModelForMaskedLM.from_pretrained(native_model(tmp_path / "b", "bert")).eval()(
        input_ids=x, attention_mask=torch.ones_like(x)).logits
    torch.testing.assert_close(model(x), direct, atol=1e-4, rtol=1e-4)
