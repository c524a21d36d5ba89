"""Small local models for the hub tests: native masked LMs built from configs, and folders with a
remote-code family's interface (``modeling_tiny.py``), as a hub repository holds them."""

from __future__ import annotations

import json
import pathlib

import pytest
import torch
import transformers


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No test reaches the Hugging Face Hub, and remote code is copied into the test's folder."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))


MODELING = pathlib.Path(__file__).parent / "modeling_tiny.py"
DATA_WORDS = [f"w{i}" for i in range(12)]  # ids 0..11


def make_tokenizer(specials: dict, chat_template: str | None = None):
    """A word-level tokenizer over DATA_WORDS and ``specials`` (token -> role), ids in that order."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {word: i for i, word in enumerate([*DATA_WORDS, *specials])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))  # any other word reads as w0
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    roles = {role: token for token, role in specials.items() if role}
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, **roles)
    if chat_template:
        fast.chat_template = chat_template
    return fast


def remote_folder(tmp_path, family: str, config_extra: dict, specials: dict, chat_template=None) -> pathlib.Path:
    """A model folder with the family's interface and its own code, as on the hub."""
    folder = tmp_path / f"tiny-{family}"
    folder.mkdir()
    source = MODELING.read_text().replace('FAMILY = "llada"', f'FAMILY = "{family}"')
    flash = "import flash_attn  # as the released MDLM code does, unguarded\n" if family.endswith("-flash") else ""
    (folder / "modeling_tiny.py").write_text(flash + source)
    namespace = {}
    exec(compile(source, str(MODELING), "exec"), namespace)
    torch.manual_seed(0)
    model = namespace["TinyModel"](namespace["TinyConfig"](vocab_size=16, data_tokens=12))
    model.save_pretrained(folder)
    model_type = family.split("-")[0]
    config = {"model_type": model_type, "architectures": ["TinyModel"], "vocab_size": 16, "data_tokens": 12,
              "auto_map": {"AutoConfig": "modeling_tiny.TinyConfig", "AutoModel": "modeling_tiny.TinyModel",
                           "AutoModelForMaskedLM": "modeling_tiny.TinyModel"}, **config_extra}
    (folder / "config.json").write_text(json.dumps(config))
    make_tokenizer(specials, chat_template).save_pretrained(folder)
    return folder


# each remote family: config fields beyond the common ones, and its special tokens (ids 12..15)
REMOTE = {
    "llada": ({"mask_token_id": 15, "eos_token_id": 12, "max_sequence_length": 24},
              {"<|endoftext|>": "eos_token", "<|eot_id|>": None, "[PAD]": "pad_token", "<|mdm_mask|>": None}),
    "dream": ({"mask_token_id": 15, "max_position_embeddings": 24},
              {"<|endoftext|>": "eos_token", "<|im_end|>": None, "[PAD]": "pad_token", "<|mask|>": "mask_token"}),
    "mdlm": ({"model_length": 24}, {"<|endoftext|>": "eos_token", "x13": None, "x14": None, "x15": None}),
    "bd3lm": ({"model_length": 24, "block_size": 4},
              {"<|endoftext|>": "eos_token", "x13": None, "x14": None, "x15": None}),
}



def native_model(tmp_path, kind: str, positions: int = 32) -> pathlib.Path:
    """A native masked LM of ``kind`` from a config, saved with a tokenizer that has a mask."""
    specials = {"[CLS]": "cls_token", "[SEP]": "sep_token", "[PAD]": "pad_token", "[MASK]": "mask_token"}
    common = dict(vocab_size=16, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    if kind == "bert":
        config = transformers.BertConfig(**common, max_position_embeddings=positions, pad_token_id=14)
    elif kind == "roberta":
        config = transformers.RobertaConfig(**common, max_position_embeddings=positions + 2, pad_token_id=14,
                                            bos_token_id=12, eos_token_id=13)
    else:
        config = transformers.ModernBertConfig(**common, max_position_embeddings=positions, pad_token_id=14,
                                               bos_token_id=12, eos_token_id=13, cls_token_id=12, sep_token_id=13)
    torch.manual_seed(0)
    model = transformers.AutoModelForMaskedLM.from_config(config).eval()
    folder = tmp_path / kind
    model.save_pretrained(folder)
    make_tokenizer(specials).save_pretrained(folder)
    return folder


