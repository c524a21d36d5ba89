"""Corpus loading and tokenizers, on a small text fixture the test writes itself."""

from __future__ import annotations

import pytest
import torch

from maskdiff_tutor import corpus

TEXT = ("Once upon a time there was a little fox. The fox liked to run in the forest.\n"
        "One day the fox met a bear. The bear said hello, and the fox said hello back.\n") * 20


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "stories.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def test_load_text_and_errors(text_file, tmp_path):
    assert corpus.load_text(text_file) == TEXT
    with pytest.raises(ValueError, match="not a file"):
        corpus.load_text(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        corpus.load_text(empty)


def test_char_tokenizer_round_trip_and_mask(tmp_path):
    tok = corpus.CharTokenizer.train(TEXT)
    ids = tok.encode(TEXT)
    assert tok.decode(ids) == TEXT
    assert tok.mask_id == tok.vocab_size - 1 and (ids < tok.mask_id).all()
    assert tok.decode([tok.mask_id]) == "[MASK]"
    tok.save(tmp_path / "tok.json")
    again = corpus.load_tokenizer(tmp_path / "tok.json")
    assert torch.equal(again.encode(TEXT), ids)
    with pytest.raises(ValueError, match="does not know"):
        tok.encode("Zebra!")


def test_bpe_tokenizer_round_trip_and_mask(tmp_path):
    tok = corpus.BPETokenizer.train(TEXT, vocab_size=300)
    ids = tok.encode(TEXT)
    assert tok.decode(ids) == TEXT
    assert tok.vocab_size == 300 and tok.mask_id == 299 and (ids < tok.mask_id).all()
    assert len(ids) < len(TEXT.encode())  # merges compress the bytes
    tok.save(tmp_path / "bpe.json")
    again = corpus.load_tokenizer(tmp_path / "bpe.json")
    assert torch.equal(again.encode(TEXT), ids) and again.mask_id == 299
    with pytest.raises(ValueError, match="vocab_size"):
        corpus.BPETokenizer.train(TEXT, vocab_size=100)


def test_hf_loader_reads_local_files_through_the_same_path(text_file):
    pytest.importorskip("datasets")
    text = corpus.load_hf_text("text", split="train", data_files=str(text_file), limit=3, separator="|")
    assert text.split("|") == TEXT.splitlines()[:3]
    with pytest.raises(ValueError, match="field"):
        corpus.load_hf_text("text", split="train", data_files=str(text_file), field="story")


def test_chunk_and_split():
    ids = torch.arange(103)
    seqs = corpus.chunk(ids, 10)
    assert seqs.shape == (10, 10) and torch.equal(seqs[1], torch.arange(10, 20))
    train, valid = corpus.split(seqs, 0.2, torch.Generator().manual_seed(0))
    assert len(train) == 8 and len(valid) == 2
    assert sorted(torch.cat([train, valid])[:, 0].tolist()) == list(range(0, 100, 10))
    with pytest.raises(ValueError, match="seq_len"):
        corpus.chunk(ids, 200)
    with pytest.raises(ValueError, match=r"^valid_fraction must be a finite number in \(0, 1\); got 1.5$"):
        corpus.split(seqs, 1.5)


def test_load_tokenizer_rejects_other_files(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"kind": "word"}')
    with pytest.raises(ValueError, match="kind"):
        corpus.load_tokenizer(path)
