"""Real masked diffusion language models from the Hugging Face hub, as the package's denoiser.

``hub.load(name_or_path)`` returns a ``HubModel``. Called on token ids ``x (B, L)`` it returns
logits ``(B, L, V)`` where position i predicts token i, which is the denoiser interface of every
decoder, NELBO and experiment in the package. The model keeps its ``mask_id``, ``tokenizer``,
end-of-text ids (``eos_ids``) and a prompt helper (``prompt_ids``, with the chat template where
the model has one).

Families (``FAMILIES``): one class each, ``LLaDA``, ``Dream``, ``MDLM``, ``BD3LM`` (remote code) and
``MaskedLM`` (the masked LMs transformers knows natively: ModernBERT, BERT, RoBERTa), holding all
the package knows of the family in one place: how ``config.json`` names it (its ``model_type``,
read as plain JSON before any code of the model runs), the Auto class that loads it, what it
refuses, where its mask is, and its forward pass as the denoiser. A new family is one more
subclass of ``Family``, listed in ``FAMILIES``.

Remote code runs only when the caller passes ``trust_remote_code=True``. The remote-code families
were written for transformers 4.x and break on 5.x (LLaDA's and BD3-LM's classes never call
``post_init``, which 5.x needs; Dream's rotary embedding asks 5.x for a ``"default"`` entry that is
gone), so ``pip install "maskdiff-tutor[hub]"`` pins ``transformers>=4.48,<5`` (4.48 is the first
with ModernBERT). Each family is tested on a small local model with its interface
(``tests/test_hub.py``). A failure this module words for the user keeps the original error as its
cause (``raise ... from error``), so the traceback still shows what the model's code raised.
Where the model's files come from, and which of them is at fault when transformers fails on them
(a missing tokenizer, damaged weights, a config that is not a JSON object), is ``hub_files``.

transformers is imported inside the functions, so ``import maskdiff_tutor.hub`` stays cheap.
"""

from __future__ import annotations

import abc
import pathlib
from dataclasses import dataclass, field

import torch

from ._checks import check_mask_id, check_tokens
from .device import pick_device
from .hub_files import ModelFiles, damaged_weights, first_line, missing_tokenizer, read_config

LLADA_MASK_ID = 126336  # LLaDA's <|mdm_mask|>, used where a config does not name its mask
TRANSFORMERS_FOR_REMOTE_CODE = ((4, 48), (5, 0))  # [low, high): what the remote-code families run on
INSTALL_HINT = 'pip install "maskdiff-tutor[hub]"  (transformers>=4.48,<5)'
LENGTH_FIELDS = ("max_sequence_length", "model_length", "max_position_embeddings", "n_positions")
END_TOKENS = ("<|eot_id|>", "<|im_end|>", "<|endoftext|>")  # end-of-turn / end-of-text tokens some families add
DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)  # the dtypes a model loads in


class Family(abc.ABC):
    """One family of hub models: how ``config.json`` names it, which transformers Auto class loads
    it, what it refuses to load, where its mask is, and its forward pass as the package's denoiser.
    The families are stateless; ``FAMILIES`` holds one instance of each."""

    name: str  # its key in FAMILIES and HubModel.family
    description: str  # the models it covers, as the messages name them
    model_types: tuple[str, ...] = ()  # config.model_type values (lower case) that name it
    auto_class: str = "AutoModelForMaskedLM"  # the transformers Auto class that loads it
    remote_code: bool = False  # the model's classes come from its repository

    def recognises(self, config: dict) -> bool:
        """Whether ``config`` (a config.json) names this family."""
        return str(config.get("model_type", "")).lower() in self.model_types

    @abc.abstractmethod
    def refuse(self, name: str, config: dict, transformers_version: str, trust_remote_code: bool) -> None:
        """Raise, saying what to do, where model ``name`` of this family cannot be loaded here."""

    @abc.abstractmethod
    def mask_id(self, name: str, config: dict, tokenizer) -> int:
        """The id of the mask token, from the config or the tokenizer."""

    @abc.abstractmethod
    def forward(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, L, V) for token ids ``x`` (B, L), position i predicting token i."""


class RemoteCodeFamily(Family):
    """A family whose classes come from the model's repository: loaded only with
    ``trust_remote_code=True``, and only on the transformers versions that code runs on."""

    remote_code = True

    def refuse(self, name: str, config: dict, transformers_version: str, trust_remote_code: bool) -> None:
        if not trust_remote_code:
            files = sorted({str(v).split(".")[0] + ".py" for v in _flatten(config.get("auto_map", {}))}) or ["its own"]
            raise ValueError(f"{name} is a {self.description} model whose classes come from its repository "
                             f"({', '.join(files)}); load(..., trust_remote_code=True) runs that code, if you trust it")
        low, high = TRANSFORMERS_FOR_REMOTE_CODE
        if not low <= _version(transformers_version) < high:
            raise ImportError(f"{name}'s own code needs transformers 4.x (from 4.48; on 5.x its classes fail to load), "
                              f"and transformers {transformers_version} is installed: {INSTALL_HINT}")


class LLaDA(RemoteCodeFamily):
    """LLaDA 8B Base and Instruct, LLaDA 1.5 (remote code). The mask is ``config.mask_token_id``
    where the config names it, else ``LLADA_MASK_ID``. No attention mask is passed: early releases
    of LLaDA's code ignored it, so batch prompts of equal length (the decoders here never pad)."""

    name = "llada"
    description = "LLaDA 8B Base / Instruct and LLaDA 1.5 (GSAI-ML)"
    model_types = ("llada",)
    auto_class = "AutoModel"

    def mask_id(self, name: str, config: dict, tokenizer) -> int:
        return int(config.get("mask_token_id", LLADA_MASK_ID))

    def forward(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return _logits(model(input_ids=x))  # (B, L, V)


class Dream(RemoteCodeFamily):
    """Dream v0 7B Base and Instruct (remote code). Its logits at position i predict token
    :math:`i + 1`; the forward shifts them back (as Dream's own sampler does). Its forward misreads
    a 2-D padding mask, so none is passed. The mask is ``config.mask_token_id``, else the tokenizer's."""

    name = "dream"
    description = "Dream v0 7B Base / Instruct (Dream-org)"
    model_types = ("dream",)
    auto_class = "AutoModel"

    def mask_id(self, name: str, config: dict, tokenizer) -> int:
        found = config.get("mask_token_id")
        return int(found) if found is not None else _tokenizer_mask_id(name, tokenizer)

    def forward(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        logits = _logits(model(input_ids=x))  # (B, L, V), position i predicting token i + 1
        # every row one place right: position i now predicts token i (position 0 keeps its own row)
        return torch.cat([logits[:, :1], logits[:, :-1]], dim=1)  # (B, L, V)


class MDLM(RemoteCodeFamily):
    """MDLM trained on OpenWebText (remote code). Its forward takes a noise level ``timesteps``
    (zeros: the released models are not time-conditioned) and returns a bare tensor; the mask is the
    last id (``vocab_size - 1``, appended to GPT-2's tokens). The released code imports flash-attn,
    which needs CUDA."""

    name = "mdlm"
    description = "MDLM on OpenWebText (kuleshov-group)"
    model_types = ("mdlm",)

    def mask_id(self, name: str, config: dict, tokenizer) -> int:
        return int(config["vocab_size"]) - 1

    def forward(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        timesteps = torch.zeros(x.shape[0], device=x.device)  # (B,)
        return _logits(model(input_ids=x, timesteps=timesteps))  # (B, L, V)


class BD3LM(MDLM):
    """BD3-LM trained on OpenWebText (remote code): MDLM's tokens, mask and ``timesteps``, read
    block-causally. It reads ``[x_t, x_0]`` side by side; the forward passes ``[x, x]``, which is the
    block-causal denoiser when the blocks before the one being decoded are clean (semi-AR decoding
    in its ``block_size``)."""

    name = "bd3lm"
    description = "BD3-LM on OpenWebText (kuleshov-group)"
    model_types = ("bd3lm",)

    def forward(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        timesteps = torch.zeros(x.shape[0], device=x.device)  # (B,)
        both = torch.cat([x, x], dim=1)  # (B, 2L): [x_t, x_0], the noisy half reads the clean half's earlier blocks
        return _logits(model(input_ids=both, timesteps=timesteps))[:, : x.shape[1]]  # (B, L, V), the x_t half


class MaskedLM(Family):
    """Any masked LM transformers knows natively (``AutoModelForMaskedLM``): ModernBERT and its chat
    fine-tunes, BERT, RoBERTa and the like, recognised by a ``...ForMaskedLM`` architecture without
    code of its own. The mask is the tokenizer's."""

    name = "masked-lm"
    description = "a masked LM transformers knows natively: ModernBERT and its chat fine-tunes, BERT, RoBERTa"

    def recognises(self, config: dict) -> bool:
        architectures = config.get("architectures") or []
        return any(str(a).endswith("ForMaskedLM") for a in architectures) and "auto_map" not in config

    def refuse(self, name: str, config: dict, transformers_version: str, trust_remote_code: bool) -> None:
        if _version(transformers_version) < TRANSFORMERS_FOR_REMOTE_CODE[0]:
            raise ImportError(f"maskdiff_tutor.hub needs transformers >= 4.48 (ModernBERT); {transformers_version} "
                              f"is installed: {INSTALL_HINT}")

    def mask_id(self, name: str, config: dict, tokenizer) -> int:
        return _tokenizer_mask_id(name, tokenizer)

    def forward(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return _logits(model(input_ids=x, attention_mask=torch.ones_like(x)))  # (B, L, V)


# every family, recognised in this order (MaskedLM last: it goes by the architecture, not the model_type)
FAMILIES = {family.name: family for family in (LLaDA(), Dream(), MDLM(), BD3LM(), MaskedLM())}


@dataclass
class HubModel:
    """A loaded model as a denoiser: ``model(x) -> logits (B, L, V)`` in float32 (float64 for a
    model loaded in float64). The model runs on ``device``; ``x`` may be on any device: it is
    moved to the model's, and the logits come back on ``x``'s. ``prompt_ids`` gives ids on the
    model's device, so a decoder's whole loop stays there."""

    model: torch.nn.Module
    tokenizer: object
    family: str  # its key in FAMILIES
    name: str
    revision: str | None
    mask_id: int
    eos_ids: tuple
    vocab_size: int  # V of the logits (may exceed the tokenizer's ids)
    max_length: int | None  # the longest sequence the model takes, where its config says
    device: torch.device
    dtype: torch.dtype
    config: dict = field(repr=False, default_factory=dict)  # its config.json

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        check_tokens("x", x, self.vocab_size, self.mask_id, allow_mask=True)
        if x.ndim != 2 or 0 in x.shape:
            raise ValueError(f"x must be a non-empty batch of token ids of shape (B, L), B >= 1 and L >= 1; "
                             f"got {tuple(x.shape)}")
        if self.max_length is not None and x.shape[1] > self.max_length:
            raise ValueError(f"a sequence of {x.shape[1]} tokens is longer than {self.name} takes "
                             f"({self.max_length}); shorten the prompt or the number of masks")
        try:
            logits = FAMILIES[self.family].forward(self.model, x.to(self.device))  # (B, L, V)
        except torch.cuda.OutOfMemoryError as error:
            raise MemoryError(f"{self.name} ran out of GPU memory on {x.shape[0]} sequences of {x.shape[1]} tokens "
                              f"({_free_memory(self.device)}); pass fewer sequences at a time") from error
        if logits.shape[:2] != x.shape:
            raise RuntimeError(f"{self.name} returned logits of shape {tuple(logits.shape)} for input "
                               f"{tuple(x.shape)}; expected ({x.shape[0]}, {x.shape[1]}, V)")
        logits = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()  # bf16/fp16 -> fp32
        return logits.to(x.device)  # (B, L, V) where x is

    def prompt_ids(self, text: str, chat: bool = True) -> torch.Tensor:
        """Token ids (1, n) of a prompt, on the model's ``device``: the user turn of the chat
        template where the tokenizer has one (and ``chat``), else the beginning-of-text token (if
        any) and the text."""
        if chat and getattr(self.tokenizer, "chat_template", None):
            ids = self.tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                                     tokenize=True)
            if isinstance(ids, dict) or hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
                ids = ids["input_ids"]
        else:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            start = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None \
                else self.tokenizer.cls_token_id
            if start is not None:
                ids = [start, *ids]
        return torch.tensor([list(ids)], dtype=torch.long, device=self.device)  # (1, n)

    def decode(self, ids) -> list[str]:
        """Each id as its text, special tokens included (the mask shows as the mask)."""
        return [self.tokenizer.decode([int(i)]) for i in (ids.tolist() if torch.is_tensor(ids) else ids)]


def load(name_or_path: str | pathlib.Path, *, device: str | torch.device | None = None,
         dtype: torch.dtype | None = None, revision: str | None = None, trust_remote_code: bool = False,
         family: str | None = None) -> HubModel:
    """A hub model (or a local folder written by ``save_pretrained``) as a ``HubModel``.

    Args:
        name_or_path: a hub id such as ``"GSAI-ML/LLaDA-8B-Instruct"`` or a local folder.
        device: None for the best available (cuda, mps, cpu) or a device that must exist.
        dtype: None for bf16 on a GPU that supports it, fp16 on other GPUs (a T4) and on MPS,
            float32 on the CPU; or one of ``DTYPES`` (torch.float32, float64, bfloat16, float16).
        revision: a branch, tag or commit of the hub repository.
        trust_remote_code: allow the model's own code to run (LLaDA, Dream, MDLM, BD3-LM need it).
        family: one of ``FAMILIES`` to override the one read from ``config.json``.

    A hub id is fetched into the hub's local cache, or read from there alone where the hub does
    not answer within ``hub_files.PROBE_SECONDS`` or ``HF_HUB_OFFLINE`` is set.
    """
    if dtype is not None and (not isinstance(dtype, torch.dtype) or dtype not in DTYPES):
        raise ValueError(f"dtype must be one of {', '.join(map(str, DTYPES))}, or None for the device's "
                         f"default; got {dtype!r}")
    name = str(name_or_path)
    transformers = _transformers()
    files = read_config(name, revision)
    config = files.config
    chosen = _family(name, config, family)
    chosen.refuse(name, config, transformers.__version__, trust_remote_code)
    device = pick_device(device)
    dtype = default_dtype(device) if dtype is None else dtype
    tokenizer, model = _from_pretrained(transformers, chosen, name, files, dict(
        revision=revision, trust_remote_code=trust_remote_code, local_files_only=files.local_only), device, dtype)
    vocab_size = _vocab_size(model, config)
    mask_id = chosen.mask_id(name, config, tokenizer)
    try:
        check_mask_id(mask_id, vocab_size)
    except ValueError as error:
        raise ValueError(f"{name}: its mask id {mask_id} lies outside its {vocab_size} logits") from error
    return HubModel(model, tokenizer, chosen.name, name, revision, mask_id, _eos_ids(config, tokenizer, vocab_size),
                    vocab_size, _max_length(config), device, dtype, config)


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 on a CUDA GPU that supports it, fp16 on an older one (a T4) and on MPS, float32 on the CPU."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16 if device.type == "mps" else torch.float32


def _from_pretrained(transformers, family: Family, name: str, files: ModelFiles, common: dict,
                     device: torch.device, dtype: torch.dtype) -> tuple:
    """The tokenizer and the model (in eval mode, on ``device``), ``common`` passed to both
    ``from_pretrained``; the failures a user can act on are said plainly, with the original error
    as their cause: a folder without tokenizer files, a damaged weights file (``hub_files``)."""
    from safetensors import SafetensorError

    tokenizer = _tokenizer(transformers, name, files.folder, common)
    dtype_key = "dtype" if _version(transformers.__version__) >= (4, 56) else "torch_dtype"
    try:
        model = getattr(transformers, family.auto_class).from_pretrained(name, **common, **{dtype_key: dtype})
        return tokenizer, model.to(device).eval()
    except SafetensorError as error:
        damaged = damaged_weights(files.folder) or [f"a weights file of {name} is damaged ({first_line(error)})"]
        raise ValueError(f"{'; '.join(damaged)}: download the model again, or save it again with "
                         "save_pretrained") from error
    except ImportError as error:
        if "flash_attn" in str(error) or "flash-attn" in str(error):
            raise ImportError(f"{name}'s code imports flash-attn, which needs a CUDA GPU: pip install flash-attn "
                              f"on a CUDA machine ({error})") from error
        raise
    except torch.cuda.OutOfMemoryError as error:
        raise MemoryError(f"{name} does not fit on {device} in {str(dtype).removeprefix('torch.')} "
                          f"({_free_memory(device)}); use a GPU with more memory, or a smaller model") from error
    except OSError as error:
        raise OSError(f"{name}: its weights could not be read ({first_line(error)})") from error


def _tokenizer(transformers, name: str, folder: pathlib.Path, common: dict):
    """The model's tokenizer. A folder without tokenizer files (where transformers tries to build
    one and fails on a missing protobuf) raises a FileNotFoundError naming the folder and the files."""
    try:
        return transformers.AutoTokenizer.from_pretrained(name, **common)
    except (ImportError, OSError, ValueError, TypeError) as error:
        missing = missing_tokenizer(folder)
        if missing is not None:
            raise FileNotFoundError(missing if pathlib.Path(name) == folder else f"{name}: {missing}") from error
        if isinstance(error, OSError):
            raise OSError(f"{name}: its tokenizer could not be read ({first_line(error)})") from error
        raise


def _logits(output) -> torch.Tensor:
    """The logits in a model's output: a bare tensor, an output with ``.logits``, or a tuple's first."""
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"the model returned {type(output).__name__}, not logits")


def _tokenizer_mask_id(name: str, tokenizer) -> int:
    """The tokenizer's mask id; a model without one cannot denoise masks."""
    found = getattr(tokenizer, "mask_token_id", None)
    if found is None:
        raise ValueError(f"{name} has no mask token (its tokenizer defines none), so it cannot denoise masks; "
                         "give a masked LM or a masked diffusion LM")
    return int(found)


def _transformers():
    import warnings

    try:
        with warnings.catch_warnings():  # transformers imports tqdm.auto, which warns where notebook widgets are absent
            warnings.filterwarnings("ignore", message="IProgress not found")
            import transformers
    except ImportError as error:
        raise ImportError(f"maskdiff_tutor.hub needs Hugging Face transformers: {INSTALL_HINT}") from error
    return transformers


def _family(name: str, config: dict, requested: str | None) -> Family:
    """The family ``requested`` by name, else the first in ``FAMILIES`` that recognises ``config``."""
    if requested is not None:
        if requested not in FAMILIES:
            raise ValueError(f"family must be one of {sorted(FAMILIES)} or None; got {requested!r}")
        return FAMILIES[requested]
    for family in FAMILIES.values():
        if family.recognises(config):
            return family
    model_type = str(config.get("model_type", "")).lower()
    architectures = config.get("architectures") or []
    known = ", ".join(f"{k} ({v.description})" for k, v in FAMILIES.items())
    raise ValueError(f"{name} (model_type {model_type!r}, architectures {architectures}) is none of the supported "
                     f"families: {known}; pass family= if it follows one of their interfaces")


def _version(text: str) -> tuple:
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _vocab_size(model, config: dict) -> int:
    """V of the logits: LLaDA's ``embedding_size`` (wider than its tokenizer), else ``vocab_size``,
    else the input embedding's rows."""
    config_size = config.get("embedding_size") or config.get("vocab_size")
    if config_size:
        return int(config_size)
    try:
        return int(model.get_input_embeddings().weight.shape[0])
    except (AttributeError, NotImplementedError) as error:
        raise ValueError("the model's config gives no vocab_size, and its input embeddings cannot be read") from error


def _eos_ids(config: dict, tokenizer, vocab_size: int) -> tuple:
    ids = []
    declared = config.get("eos_token_id")
    ids.extend(declared if isinstance(declared, list) else [declared])
    ids.extend([tokenizer.eos_token_id, getattr(tokenizer, "sep_token_id", None)])
    vocabulary = tokenizer.get_vocab()
    ids.extend(vocabulary.get(token) for token in END_TOKENS)
    return tuple(sorted({int(i) for i in ids if i is not None and 0 <= int(i) < vocab_size}))


def _max_length(config: dict) -> int | None:
    for key in LENGTH_FIELDS:
        if isinstance(config.get(key), int) and config[key] > 0:
            return config[key]
    return None


def _flatten(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _flatten(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _flatten(item)
    elif value is not None:
        yield value


def _free_memory(device: torch.device) -> str:
    if device.type != "cuda":
        return f"on {device}"
    free, total = torch.cuda.mem_get_info(device)
    return f"{free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB"
