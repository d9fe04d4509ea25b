"""The generation backend resource: one interface, three implementations (transformers, vLLM, endpoint)."""

from aya_assets.generation.base import Completion, GenerationBackend, Progress, SamplingSettings, sampling_settings
from aya_assets.generation.endpoint import EndpointBackend, EndpointError
from aya_assets.generation.hf import TransformersBackend
from aya_assets.generation.vllm_backend import VLLMBackend

__all__ = [
    "Completion",
    "EndpointBackend",
    "EndpointError",
    "GenerationBackend",
    "Progress",
    "SamplingSettings",
    "TransformersBackend",
    "sampling_settings",
    "VLLMBackend",
]
