"""A small model with one family's interface, for tests/test_hub.py: copied into a model folder
and loaded through ``trust_remote_code=True``, as a hub model's own code is.

Its prediction for a position is always "one more than the token before it" (mod the data
vocabulary), with a confidence that grows with a learned scale. The family decides how that is
presented, as the released models of each family do:

- llada: ``model(input_ids=...)`` -> an output with ``.logits``, unshifted;
- dream: the same, but the logits at position i predict token i + 1; a 2-D attention mask is refused;
- mdlm: ``model(input_ids, timesteps)`` (required) -> a bare tensor;
- bd3lm: ``model(input_ids=[x_t, x_0], timesteps)`` -> a bare tensor for the x_t half, each position
  predicted from the clean half's token before it.
"""

import torch
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput

FAMILY = "llada"  # replaced when the test writes the folder


class TinyConfig(PretrainedConfig):
    model_type = FAMILY.split("-")[0]

    def __init__(self, vocab_size=16, data_tokens=12, **kwargs):
        self.vocab_size = vocab_size
        self.data_tokens = data_tokens
        super().__init__(**kwargs)


class TinyModel(PreTrainedModel):
    config_class = TinyConfig

    def __init__(self, config):
        super().__init__(config)
        self.scale = torch.nn.Parameter(torch.tensor(4.0))
        self.post_init()

    def _predict(self, previous):  # (B, L) the token before each position -> logits (B, L, V)
        target = (previous + 1) % self.config.data_tokens
        logits = torch.zeros(*previous.shape, self.config.vocab_size, device=previous.device)
        return logits + self.scale * torch.nn.functional.one_hot(target, self.config.vocab_size)

    def forward(self, input_ids=None, attention_mask=None, timesteps=None, sample_mode=None, **kwargs):
        family = FAMILY.split("-")[0]
        if family in ("mdlm", "bd3lm") and timesteps is None:
            raise TypeError("forward() missing 1 required argument: 'timesteps'")
        if family == "dream" and attention_mask is not None and attention_mask.ndim == 2:
            raise ValueError("a 2-D attention mask is not supported")
        if family == "bd3lm":
            length = input_ids.shape[1] // 2
            clean = input_ids[:, length:]
            previous = torch.cat([clean[:, :1], clean[:, :-1]], dim=1)
            return self._predict(previous)
        previous = torch.cat([input_ids[:, :1], input_ids[:, :-1]], dim=1)
        logits = self._predict(previous)
        if family == "dream":  # position i carries the prediction for position i + 1
            logits = torch.cat([logits[:, 1:], logits[:, -1:]], dim=1)
        if family == "mdlm":
            return logits
        return MaskedLMOutput(logits=logits)
