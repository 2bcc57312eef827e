"""A LoRA linear layer whose adapter update is one BLAS call, for training.

PEFT computes `base(x) + lora_B(lora_A(x)) * scaling`: besides the two small matmuls it makes
three passes over a tokens-by-out_features tensor, a multiply and an add forward and the
multiply again backward. Written as `base(x).addmm_(lora_A(x), lora_B.weight.T, alpha=scaling)`
the scaling and the sum happen inside the matmul, in the output the base layer already wrote.
The result and the gradients are PEFT's (checked in tests/train/test_local.py); the saved adapter
is a standard PEFT adapter. Anything other than one plain active adapter (dropout, DoRA and
other variants, merged or disabled adapters, mixed batches) takes PEFT's own forward.
"""

from __future__ import annotations

from typing import Any

import torch
from peft import LoraConfig
from peft.tuners.lora.layer import Linear as LoraLinear
from torch import nn


class FusedLoraLinear(LoraLinear):
    def _plain_adapter(self, args: tuple, kwargs: dict[str, Any]) -> str | None:
        """The one active adapter when the fused path computes exactly what PEFT would."""
        names = self.active_adapters
        if self.disable_adapters or self.merged or args or kwargs or len(names) != 1:
            return None
        name = names[0]
        plain = (
            name in self.lora_A
            and name not in self.lora_variant
            and isinstance(self.lora_dropout[name], nn.Identity)
            and self.lora_B[name].bias is None
            and self.lora_A[name].weight.dtype == self.get_base_layer().weight.dtype
        )
        return name if plain else None

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        name = self._plain_adapter(args, kwargs)
        if name is None:
            return super().forward(x, *args, **kwargs)
        low_rank = self.lora_A[name](x)
        result = self.base_layer(x)
        # in place: the base matmul's backward needs its inputs, not this output
        result.view(-1, result.shape[-1]).addmm_(
            low_rank.view(-1, low_rank.shape[-1]),
            self.lora_B[name].weight.t(),
            alpha=self.scaling[name],
        )
        return result


def with_fused_linear(config: LoraConfig) -> LoraConfig:
    """The config, with its nn.Linear targets built as FusedLoraLinear (PEFT's custom-module
    hook); the adapter it trains saves and loads as a plain PEFT LoRA adapter."""
    config._register_custom_module({nn.Linear: FusedLoraLinear})
    return config
