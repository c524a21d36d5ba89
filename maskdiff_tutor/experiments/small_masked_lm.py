"""Masked LMs trained on real text with ``train()``, saved in the hub's format.

The "Real models" chapter runs the paper's LLaDA measurements through ``hub.load`` exactly as on a
released model. The outputs the book stores are those of the ``small`` preset: a ModernBERT
(``transformers.ModernBertForMaskedLM``, a native masked LM) of about 0.15M parameters with a
byte-level BPE tokenizer of 1024 tokens, both trained here on Tiny Shakespeare and stored with the
package (``BOOK_FOLDER``). The ``1m`` preset, about 1.1M parameters trained twice as long, is the
book's larger model of the same text; its place is ``LARGER_FOLDER``, and the "Larger runs"
appendix gives the command that trains it (about 35 minutes on one CPU core).
``make(text, folder, PRESETS[name])`` trains one; ``maskdiff-tutor small-masked-lm --text FILE
--preset NAME --out FOLDER`` is the same from the command line.

The last ``Settings.held_out`` sequences of the text are kept out of training and stored beside the
weights (``held_out.safetensors``), so the model's held-out NELBO can be measured anywhere
(``held_out_nelbo``, in float64). Beside the weights, ``training.json`` holds the
:class:`Training` record: the settings, the text, the history, the held-out NELBO and where it
trained (``Training.load(folder)`` reads it back).
"""

from __future__ import annotations

import json
import pathlib
import time
from dataclasses import dataclass

import torch
from safetensors.torch import save_file

from .. import corpus
from ..device import pick_device
from ..files import read_json, write_atomically
from ..records import from_json, non_finite_places, to_json
from ..train import History, TrainConfig, train
from .result import Environment
from .trained_models import BOOK_MODELS

BOOK_FOLDER = BOOK_MODELS / "small_masked_lm"  # the small preset
LARGER_FOLDER = BOOK_MODELS / "text_masked_lm_1m"  # the 1m preset
SPECIALS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..3 of the tokenizer
RECORD = "training.json"  # the Training record beside the weights
HELD_OUT = "held_out.safetensors"  # the held-out sequences beside the weights, tensor "ids" (B, seq_len)
NELBO_SAMPLES = 8  # draws of a mask pattern per held-out sequence in the held-out NELBO


@dataclass(frozen=True)
class Settings:
    """The tokenizer, model and training settings of ``make``."""
    vocab_size: int = 1024  # BPE tokens, the four specials included
    seq_len: int = 64  # tokens per training sequence ([CLS] and 63 text tokens)
    hidden_size: int = 64
    layers: int = 2
    heads: int = 4
    steps: int = 1500
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0
    held_out: int = 256  # the last sequences of the text, kept out of training for the held-out NELBO


PRESETS = {
    "small": Settings(),
    "1m": Settings(hidden_size=128, layers=6, heads=4, steps=3000, lr=2e-3),
}


@dataclass(frozen=True)
class Text:
    """The text the tokenizer and the model were trained on."""
    characters: int
    tokens: int  # BPE tokens of the whole text
    sequences: int  # training sequences of seq_len tokens ([CLS] and the text)
    sha256: str  # of the text as UTF-8


@dataclass(frozen=True)
class Training:
    """What ``make`` trained, on what, and where: the record saved as ``training.json`` beside the model."""
    settings: Settings  # tokenizer, model and training settings
    text: Text  # the training text
    parameters: int  # the model's parameters
    history: History  # train()'s records (loss in nats per masked token)
    held_out_nelbo: float  # nats per text token on the held-out sequences (``held_out_nelbo``)
    transformers: str  # the version of transformers that built and saved the model
    environment: Environment  # versions, hardware and wall time of the training run

    def save(self, folder: str | pathlib.Path) -> pathlib.Path:
        """Write the record as ``folder/training.json`` (strict JSON, atomically; a non-finite loss is
        written as null and its place listed in ``environment.non_finite_values``)."""
        found: list[str] = []
        record = to_json(self, "", found)
        record["environment"]["non_finite_values"] = found
        return write_atomically(pathlib.Path(folder) / RECORD, json.dumps(record, indent=1, allow_nan=False) + "\n")

    @classmethod
    def load(cls, folder: str | pathlib.Path) -> Training:
        """The record ``save`` wrote in ``folder``; every value checked against its field."""
        path = pathlib.Path(folder) / RECORD
        record = read_json(path, "the training record of a small masked LM")
        environment = record.get("environment") if isinstance(record, dict) else None
        places = environment.get("non_finite_values", []) if isinstance(environment, dict) else []
        try:
            return from_json(cls, record, "", non_finite_places(places))
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None


class _Logits(torch.nn.Module):
    """The masked LM as ``train()`` calls a denoiser: ``model(x) -> logits``."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.config = model.config  # train() reads vocab_size from it

    def forward(self, x):
        return self.model(input_ids=x, attention_mask=torch.ones_like(x)).logits


def make(text: str | pathlib.Path, folder: str | pathlib.Path, settings: Settings = Settings(),
         device: str | torch.device | None = None, progress: bool = False) -> Training:
    """Train the tokenizer and the model on ``text`` and save both in ``folder``
    (``save_pretrained``), with the :class:`Training` record as ``training.json``."""
    import hashlib

    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    started, device = time.time(), pick_device(device)
    raw = corpus.load_text(text)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([raw], trainers.BpeTrainer(vocab_size=settings.vocab_size, special_tokens=list(SPECIALS),
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", cls_token="[CLS]",
                                                     sep_token="[SEP]", mask_token="[MASK]")
    data, tokens = _sequences(tokenizer, raw, settings)
    if settings.held_out < 1 or settings.held_out >= len(data):
        raise ValueError(f"held_out must be from 1 to {len(data) - 1}, fewer than the text's {len(data)} sequences "
                         f"of {settings.seq_len} tokens; got {settings.held_out}")
    data, held_out = data[: -settings.held_out], data[-settings.held_out:]
    config = transformers.ModernBertConfig(
        vocab_size=len(tokenizer), hidden_size=settings.hidden_size, num_hidden_layers=settings.layers,
        num_attention_heads=settings.heads, intermediate_size=2 * settings.hidden_size,
        max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id, cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id, bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
        global_attn_every_n_layers=1, embedding_dropout=0.0, mlp_dropout=0.0, attention_dropout=0.0)
    torch.manual_seed(settings.seed)
    model = transformers.ModernBertForMaskedLM(config)
    history = train(_Logits(model), data, tokenizer.mask_token_id,
                    TrainConfig(steps=settings.steps, batch_size=settings.batch_size, lr=settings.lr,
                                log_every=max(1, settings.steps // 50)),
                    device=device, seed=settings.seed, progress=progress)
    folder = pathlib.Path(folder)
    model.cpu().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    save_file({"ids": held_out.contiguous()}, str(folder / HELD_OUT))
    record = Training(settings, Text(len(raw), tokens, len(data) + len(held_out),
                                     hashlib.sha256(raw.encode("utf-8")).hexdigest()),
                      parameters=sum(p.numel() for p in model.parameters()), history=history,
                      held_out_nelbo=held_out_nelbo(folder, seed=settings.seed),
                      transformers=transformers.__version__, environment=Environment.now(device, started))
    record.save(folder)
    return record


def _sequences(tokenizer, raw: str, settings: Settings) -> tuple[torch.Tensor, int]:
    """The text as sequences of [CLS] and ``seq_len - 1`` tokens, in the text's order, and the
    number of tokens of the whole text."""
    ids = torch.tensor(tokenizer(raw, add_special_tokens=False)["input_ids"], dtype=torch.long)
    body = settings.seq_len - 1
    chunks = ids[: len(ids) // body * body].view(-1, body)
    return torch.cat([torch.full((len(chunks), 1), tokenizer.cls_token_id), chunks], dim=1), len(ids)


def held_out_nelbo(folder: str | pathlib.Path, samples: int = NELBO_SAMPLES, seed: int = 0) -> float:
    """The model in ``folder``'s NELBO on its held-out sequences, in nats per text token: the
    count form of the continuous-time NELBO (``nelbo.count_nelbo``, ``samples`` mask patterns per
    sequence, drawn with ``seed``), computed in float64 on the CPU so that every CPU gives the
    same digits. The [CLS] token that opens each sequence is never masked."""
    import transformers
    from safetensors.torch import load_file

    from ..nelbo import count_nelbo

    folder = pathlib.Path(folder)
    if not (folder / HELD_OUT).is_file():
        raise ValueError(f"{str(folder)!r} has no {HELD_OUT}: it was not made by small_masked_lm.make")
    model = transformers.ModernBertForMaskedLM.from_pretrained(folder, dtype=torch.float64).eval()
    ids = load_file(str(folder / HELD_OUT))["ids"]
    cls, body = ids[:1, :1], ids[:, 1:]

    def denoiser(x):  # the text positions, with the [CLS] put back in front
        full = torch.cat([cls.expand(len(x), 1), x], dim=1)
        return model(input_ids=full, attention_mask=torch.ones_like(full)).logits[:, 1:]

    with torch.no_grad():
        estimate = count_nelbo(denoiser, body, SPECIALS.index("[MASK]"), torch.Generator().manual_seed(seed),
                               samples)
    return float(estimate.value) / body.shape[1]
