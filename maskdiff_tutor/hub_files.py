"""A hub model's files for ``maskdiff_tutor.hub``: where they come from and whether they are whole.

``read_config`` finds the model's folder (a local folder, or the Hugging Face Hub's snapshot in
the local cache) and reads its ``config.json`` as plain JSON, before any code of the model runs.
It asks the hub once, with a short time limit (``PROBE_SECONDS``), whether it answers: without a
network the hub's client would retry each file five times (about 25 s) before failing, so a hub
that does not answer, like ``HF_HUB_OFFLINE=1``, means the model loads from the local cache only.

When transformers fails on a model's files, ``missing_tokenizer`` and ``damaged_weights`` say
which file is at fault: a folder without a tokenizer's vocabulary (transformers then tries to
build one and fails on a missing protobuf), a truncated or damaged ``.safetensors`` file (the
safetensors library names no file).

transformers and huggingface_hub are imported inside the functions, as in ``hub``.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import threading
from dataclasses import dataclass

PROBE_SECONDS = 3.0  # how long load waits for the hub to answer before it reads the local cache only
# a tokenizer's vocabulary: a fast tokenizer's tokenizer.json, or a slow tokenizer's file (BERT's, GPT-2's
# vocab.json with merges.txt, Llama's and T5's sentencepiece models)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model",
                   "sentencepiece.bpe.model")
MAX_HEADER_BYTES = 100_000_000  # the longest safetensors header the safetensors library reads
CONFIG_HOLDS = "one JSON object of the model's settings, as save_pretrained writes it"


@dataclass(frozen=True)
class ModelFiles:
    """Where a model's files are, and its config."""

    config: dict  # its config.json
    folder: pathlib.Path  # the local folder, or the hub cache's snapshot folder holding config.json
    local_only: bool  # read the files from the local cache only (the hub is off or does not answer)


def read_config(name: str, revision: str | None) -> ModelFiles:
    """The model's folder and config.json (plain JSON, no code runs), from a local folder or the hub."""
    folder = pathlib.Path(name)
    if folder.is_dir():
        path = folder / "config.json"
        if not path.is_file():
            raise ValueError(f"{name} is a folder without config.json; give a folder written by save_pretrained")
        local_only = True
    elif folder.exists():
        raise ValueError(f"{name} is a file; give a hub id (owner/name) or a folder written by save_pretrained")
    else:
        unreachable = "HF_HUB_OFFLINE is set" if hub_offline() else hub_unreachable()
        local_only = unreachable is not None
        path = pathlib.Path(_hub_config(name, revision, unreachable))
    return ModelFiles(_config_object(path), path.parent, local_only)


def _config_object(path: pathlib.Path) -> dict:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable model config ({first_line(error)}); config.json holds "
                         f"{CONFIG_HOLDS}") from error
    if not isinstance(config, dict):
        raise ValueError(f"{path}: not a model config: it holds a JSON {_json_kind(config)}, and config.json holds "
                         f"{CONFIG_HOLDS}")
    return config


def _json_kind(value) -> str:
    kinds = {list: "list", str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def hub_offline() -> bool:
    """Whether the hub is switched off (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``, read now or at import)."""
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return constants.HF_HUB_OFFLINE or any(str(f).upper() in ("1", "ON", "YES", "TRUE") for f in flags)


def hub_unreachable(seconds: float | None = None) -> str | None:
    """None where the hub's endpoint answers an HTTP request within ``seconds`` (``PROBE_SECONDS``),
    else why not. Any answer counts, an error status included; the request goes through the hub
    client's own session (its proxies), in a thread, so that a name lookup that hangs is cut short too."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    seconds = PROBE_SECONDS if seconds is None else seconds
    endpoint = constants.ENDPOINT
    failures = []

    def probe():
        try:
            get_session().head(endpoint, timeout=seconds, allow_redirects=False)
        except Exception as error:  # noqa: BLE001 (a refused connection, a timeout, a proxy or TLS error alike)
            failures.append(error)
        else:
            failures.append(None)

    thread = threading.Thread(target=probe, name="hub-probe", daemon=True)
    thread.start()
    thread.join(seconds + 1)
    if not failures or (failures[0] is not None and "timed out" in str(failures[0]).lower()):
        return f"{endpoint} did not answer within {seconds:g} s"
    if failures[0] is None:
        return None
    # the operating system's reason (Connection refused, Name or service not known), deep in requests' message
    reason = re.search(r"\[Errno -?\d+\] ([^'\"()]+)", str(failures[0]))
    return f"{endpoint}: {reason.group(1).strip() if reason else first_line(failures[0])}"


def _hub_config(name: str, revision: str | None, unreachable: str | None) -> str:
    """The path of the hub repository's config.json, fetched into the local cache (or found there,
    where the hub is off or does not answer)."""
    from transformers.utils import cached_file

    try:
        path = cached_file(name, "config.json", revision=revision, local_files_only=unreachable is not None)
    except (OSError, ValueError) as error:
        if unreachable is not None or "connect" in str(error).lower():
            raise OSError(f"{name} is not a local folder, and the Hugging Face Hub could not be reached to fetch "
                          "it; connect to the network, or pass a folder written by save_pretrained "
                          f"({unreachable or first_line(error)})") from error
        raise OSError(f"{name} is neither a local folder nor a model on the Hugging Face Hub"
                      f"{f' at revision {revision}' if revision else ''} ({first_line(error)})") from error
    if path is None:
        raise OSError(f"{name}: the hub repository has no config.json")
    return path


def missing_tokenizer(folder: pathlib.Path) -> str | None:
    """Which tokenizer files ``folder`` lacks, for a tokenizer that failed to load; None where it
    has a vocabulary (``TOKENIZER_FILES``) and ``tokenizer_config.json`` (save_pretrained writes both)."""
    vocabulary = [file for file in TOKENIZER_FILES if (folder / file).is_file()]
    save = "save the tokenizer beside the model: tokenizer.save_pretrained(folder)"
    if not vocabulary:
        return f"no tokenizer files in {folder} (a tokenizer needs one of {', '.join(TOKENIZER_FILES)}); {save}"
    if not (folder / "tokenizer_config.json").is_file():
        return (f"{folder} has {', '.join(vocabulary)} but no tokenizer_config.json, which names the tokenizer "
                f"class that reads it; {save}")
    return None


def damaged_weights(folder: pathlib.Path) -> list[str]:
    """Each ``.safetensors`` file in ``folder`` whose size or header is not what the format needs,
    as ``"<path> is truncated or damaged (why)"``."""
    found = []
    for path in sorted(folder.glob("*.safetensors")):
        why = _safetensors_fault(path)
        if why is not None:
            found.append(f"{path} is truncated or damaged ({why})")
    return found


def _safetensors_fault(path: pathlib.Path) -> str | None:
    """What is wrong with a safetensors file, or None: an 8-byte little-endian header length, a JSON
    header of that length, then the tensors' bytes, ending where the header's last offset says."""
    size = path.stat().st_size
    with path.open("rb") as file:
        start = file.read(8)
        header_length = int.from_bytes(start, "little") if len(start) == 8 else None
        if header_length is None or 8 + header_length > size:
            return f"it holds {size} bytes, fewer than its header's length says"
        if header_length > MAX_HEADER_BYTES:
            return f"its header length, {header_length} bytes, is beyond the format's {MAX_HEADER_BYTES}"
        try:
            header = json.loads(file.read(header_length))
            end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
            return f"its header is not a safetensors header: {first_line(error)}"
    expected = 8 + header_length + end
    return None if size == expected else f"its header promises {expected} bytes, and it holds {size}"


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type where the message is empty)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
