"""Real text for the experiments: loading a corpus, tokenizing it, cutting it into sequences.

Book chapters "Generation order" and "Blocks" (the real-text halves). A corpus comes from a local
text file (``load_text``) or, for users with network access, from a Hugging Face dataset such as
TinyStories (``load_hf_text``; the ``datasets`` library is imported only there). Two tokenizers,
each saved beside the model that uses it:

- ``CharTokenizer``: one id per character of the training text, plus the mask as the last id.
- ``BPETokenizer``: byte-level BPE trained with the ``tokenizers`` library, plus the mask.

In both the mask is the last id, so ``vocab_size = mask_id + 1`` and data never contains it.
"""

from __future__ import annotations

import json
import pathlib

import torch

from ._checks import check_number, check_positive_int
from .files import read_json

MASK_TOKEN = "[MASK]"


def load_text(path: str | pathlib.Path) -> str:
    """The UTF-8 text of a local file; a missing or empty file is an error."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"path {str(path)!r} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"path {str(path)!r} is not readable as UTF-8 text "
                         f"({type(error).__name__}: {error})") from None
    if not text:
        raise ValueError(f"path {str(path)!r} is empty")
    return text


def load_hf_text(name: str = "roneneldan/TinyStories", split: str = "train", field: str = "text",
                 limit: int | None = None, separator: str = "\n\n", **load_kwargs) -> str:
    """Join the ``field`` of the first ``limit`` rows of a Hugging Face dataset into one text.

    Needs the ``datasets`` library (``pip install "maskdiff-tutor[text]"``) and, for hub datasets,
    the network. ``load_kwargs`` go to ``datasets.load_dataset`` (for example the builder
    ``name="text"`` with ``data_files=...`` reads local files through the same path)."""
    try:
        from datasets import load_dataset
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError('load_hf_text needs the datasets library: pip install "maskdiff-tutor[text]"') from error
    rows = load_dataset(name, split=split, **load_kwargs)
    if field not in rows.column_names:
        raise ValueError(f"field must be one of the dataset's columns {rows.column_names}; got {field!r}")
    if limit is not None:
        check_positive_int("limit", limit)
        rows = rows.select(range(min(limit, len(rows))))
    return separator.join(rows[field])


class CharTokenizer:
    r"""Characters of a training text as ids :math:`0, \dots, C - 1`, the mask as id C."""

    def __init__(self, chars: list[str]):
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars) or not chars:
            raise ValueError("chars must be a non-empty list of distinct single characters")
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}
        self.mask_id = len(self.chars)
        self.vocab_size = self.mask_id + 1

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        return cls(sorted(set(text)))

    def encode(self, text: str) -> torch.Tensor:
        """Token ids (N,) of ``text``; a character outside the vocabulary is an error."""
        unknown = sorted(set(text) - set(self.index))
        if unknown:
            raise ValueError(f"text has characters the tokenizer does not know: {unknown[:10]}")
        return torch.tensor([self.index[c] for c in text], dtype=torch.long)

    def decode(self, ids) -> str:
        """The text of token ids (the mask shows as its symbol)."""
        return "".join(MASK_TOKEN if int(i) == self.mask_id else self.chars[int(i)] for i in ids)

    def save(self, path: str | pathlib.Path) -> None:
        """Write the tokenizer as JSON to ``path``."""
        pathlib.Path(path).write_text(json.dumps({"kind": "char", "chars": self.chars}, ensure_ascii=False))


class BPETokenizer:
    """Byte-level BPE (the ``tokenizers`` library) with the mask added as the last id."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.mask_id = tokenizer.token_to_id(MASK_TOKEN)
        self.vocab_size = tokenizer.get_vocab_size()
        if self.mask_id != self.vocab_size - 1:
            raise ValueError(f"the tokenizer's {MASK_TOKEN} must be its last id ({self.vocab_size - 1}); "
                             f"got {self.mask_id}")

    @classmethod
    def train(cls, text: str, vocab_size: int = 512) -> BPETokenizer:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        check_positive_int("vocab_size", vocab_size, minimum=258)  # 256 bytes, at least one merge, the mask
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size - 1, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tokenizer.train_from_iterator([text], trainer=trainer)
        tokenizer.add_special_tokens([MASK_TOKEN])  # the last id
        return cls(tokenizer)

    def encode(self, text: str) -> torch.Tensor:
        """Token ids (N,) of ``text``."""
        return torch.tensor(self.tokenizer.encode(text).ids, dtype=torch.long)

    def decode(self, ids) -> str:
        """The text of token ids."""
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

    def save(self, path: str | pathlib.Path) -> None:
        """Write the tokenizer (the ``tokenizers`` JSON format) to ``path``."""
        pathlib.Path(path).write_text(json.dumps({"kind": "bpe", "tokenizer": self.tokenizer.to_str()}))


def load_tokenizer(path: str | pathlib.Path):
    """Load a tokenizer written by ``save`` of either class."""
    record = read_json(path, "a tokenizer saved by maskdiff_tutor")
    kind = record.get("kind") if isinstance(record, dict) else None
    try:
        if kind == "char":
            return CharTokenizer(record["chars"])
        if kind == "bpe":
            from tokenizers import Tokenizer

            return BPETokenizer(Tokenizer.from_str(record["tokenizer"]))
    except Exception as error:  # KeyError, TypeError, or the tokenizers library's own errors
        raise ValueError(f"{path}: a {kind} tokenizer record that cannot be read ({type(error).__name__}: {error})") \
            from None
    raise ValueError(f"{path} is not a tokenizer saved by maskdiff_tutor (kind must be 'char' or 'bpe')")


def chunk(ids: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Cut a token stream (N,) into non-overlapping sequences (N // seq_len, seq_len); the tail is dropped."""
    check_positive_int("seq_len", seq_len)
    if ids.ndim != 1 or len(ids) < seq_len:
        raise ValueError(f"ids must be a 1-D stream of at least seq_len = {seq_len} tokens; "
                         f"got shape {tuple(ids.shape)}")
    n = len(ids) // seq_len
    return ids[: n * seq_len].view(n, seq_len)


def split(sequences: torch.Tensor, valid_fraction: float = 0.1, generator: torch.Generator | None = None):
    """Shuffle sequences (N, L) and split them into (train, valid); both non-empty."""
    check_number("valid_fraction", valid_fraction, above=0, below=1)
    n_valid = max(1, round(len(sequences) * valid_fraction))
    if len(sequences) - n_valid < 1:
        raise ValueError(f"{len(sequences)} sequences are too few to split with valid_fraction = {valid_fraction}")
    order = torch.randperm(len(sequences), generator=generator)
    return sequences[order[n_valid:]], sequences[order[:n_valid]]
