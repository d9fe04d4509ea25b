"""The tensors mergekit reads from a checkpoint, with its Cohere definition corrected for checkpoints without qk-norm.

Fits mergekit 0.1.5 with transformers 5.24. mergekit's `_data/architectures/cohere.json` lists
`self_attn.q_norm.weight` / `k_norm.weight` as required in every layer, but `CohereForCausalLM` only has them with
`use_qk_norm: true`; Aya Expanse and Aya 23 set it false, so mergekit refused to merge them ("Tensor
model.layers.0.self_attn.q_norm.weight required but not present"). mergekit has no API to register an architecture:
it looks definitions up in `mergekit.architecture.json_definitions.NAME_TO_ARCH`, so importing this module replaces
the Cohere entry there with one that asks for qk-norm exactly when the config has it. Its qwen2, llama and gemma2
definitions match what transformers saves, tied or untied lm_head (tests/test_merge_arch.py checks each).
Imported only where a merge or its sanity check runs: mergekit takes seconds to import.
"""

from __future__ import annotations

from mergekit.architecture import ModelArchitecture, ModuleDefinition, WeightInfo, arch_info_for_config
from mergekit.architecture.json_definitions import NAME_TO_ARCH, JsonModuleArchitecture
from transformers import PretrainedConfig
from transformers.conversion_mapping import get_checkpoint_conversion_mapping

COHERE = "CohereForCausalLM"
QK_NORM = (".self_attn.q_norm.weight", ".self_attn.k_norm.weight")


class CohereArchitecture(JsonModuleArchitecture, frozen=True):
    """mergekit's cohere.json layers, with q_norm/k_norm only where the config sets `use_qk_norm`."""

    def layer_weights(self, index: int, config: PretrainedConfig) -> list[WeightInfo]:
        weights = super().layer_weights(index, config)
        if getattr(config, "use_qk_norm", False):
            return weights
        return [w for w in weights if not w.name.endswith(QK_NORM)]


def _corrected_cohere(shipped: ModelArchitecture) -> ModelArchitecture:
    definition = shipped.modules["default"].architecture.definition
    return ModelArchitecture(modules={"default": ModuleDefinition(architecture=CohereArchitecture(definition=definition))},
                             architectures=shipped.architectures, model_type=shipped.expected_model_type)


(_shipped_cohere,) = NAME_TO_ARCH[COHERE]  # one definition: if mergekit ships more, this module needs revisiting
NAME_TO_ARCH[COHERE] = [_corrected_cohere(_shipped_cohere)]


def mergekit_weights(config: PretrainedConfig) -> list[WeightInfo] | None:
    """The tensors mergekit reads by name from a checkpoint with this config; None where it reads them otherwise: no
    definition (it infers them from the files) or a layout transformers converts on load (mergekit converts too)."""
    if len(config.architectures or []) != 1 or get_checkpoint_conversion_mapping(config.model_type):
        return None
    arch = arch_info_for_config(config)
    return None if arch is None else arch.all_weights(config)
