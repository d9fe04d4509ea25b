"""Tiny random checkpoints of the gpu profile's real architectures, each with its own tokenizer and chat template.

Cohere (Aya Expanse / Aya 23 without qk-norm, Command R+ with it), Qwen2, Llama 3 and Gemma2 teachers, a SmolLM2-style
weak English model, a Cohere student, a Llama sequence-classification reward model and a Qwen2 judge. Each tokenizer
is a byte-level BPE trained here (different vocabularies and special tokens, embeddings padded past the vocabulary
as real checkpoints do), each chat template is its model family's own, without `{% generation %}` markers, and each
generation config lists the end-of-turn ids the way the published checkpoints do. Nothing is downloaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GenerationConfig, PreTrainedTokenizerFast

from aya_assets.evaluation.judge import ARENA_HARD_SYSTEM, ARENA_HARD_USER

SEED_PROMPTS = Path(__file__).parents[1] / "data" / "seed" / "prompts"

COHERE_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}<|START_OF_TURN_TOKEN|><|USER_TOKEN|>{{ message['content'] }}<|END_OF_TURN_TOKEN|>"
    "{% elif message['role'] == 'assistant' %}<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>{{ message['content'] }}<|END_OF_TURN_TOKEN|>"
    "{% elif message['role'] == 'system' %}<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>{{ message['content'] }}<|END_OF_TURN_TOKEN|>"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>{% endif %}"
)
QWEN2_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA3_TEMPLATE = (
    "{{- bos_token }}{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"
)
SMOL_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class ChatFormat:
    """A model family's tokens and template: what its tokenizer_config.json and generation_config.json say."""

    template: str
    specials: tuple[str, ...]  # every special token, in id order from 0
    eos: str  # the tokenizer's eos_token
    bos: str | None = None  # prepended by the tokenizer where the family does (Cohere, Llama 3, Gemma)
    pad: str | None = None  # Llama 3 ships none
    stop: tuple[str, ...] = ()  # generation_config.eos_token_id besides eos (end of turn, end of text)
    added: tuple[str, ...] = ()  # plain (non-special) added tokens


COHERE = ChatFormat(COHERE_TEMPLATE, ("<PAD>", "<UNK>", "<CLS>", "<SEP>", "<MASK_TOKEN>", "<BOS_TOKEN>", "<EOS_TOKEN>",
                                      "<|START_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>", "<|USER_TOKEN|>",
                                      "<|CHATBOT_TOKEN|>", "<|SYSTEM_TOKEN|>"),
                    eos="<|END_OF_TURN_TOKEN|>", bos="<BOS_TOKEN>", pad="<PAD>")
QWEN2 = ChatFormat(QWEN2_TEMPLATE, ("<|endoftext|>", "<|im_start|>", "<|im_end|>"), eos="<|im_end|>", pad="<|endoftext|>",
                   stop=("<|endoftext|>",))
LLAMA3 = ChatFormat(LLAMA3_TEMPLATE, ("<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                                      "<|finetune_right_pad_id|>", "<|start_header_id|>", "<|end_header_id|>",
                                      "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"),
                    eos="<|eot_id|>", bos="<|begin_of_text|>", stop=("<|end_of_text|>", "<|eom_id|>"))
GEMMA = ChatFormat(GEMMA_TEMPLATE, ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"),
                   eos="<eos>", bos="<bos>", pad="<pad>", stop=("<end_of_turn>",))
SMOL = ChatFormat(SMOL_TEMPLATE, ("<|endoftext|>", "<|im_start|>", "<|im_end|>"), eos="<|im_end|>", bos="<|im_start|>",
                  pad="<|im_end|>")
# The reward model pads with Llama 3.1's reserved pad token, as Skywork-Reward-Llama-3.1 does.
LLAMA3_REWARD = ChatFormat(LLAMA3_TEMPLATE, LLAMA3.specials, eos="<|eot_id|>", bos="<|begin_of_text|>",
                           pad="<|finetune_right_pad_id|>", stop=LLAMA3.stop)
# The judge's labels are single tokens, so that a random judge still writes some verdicts (see `judge_bias`).
JUDGE_LABELS = ("[[A>B]]", "[[B>A]]", "[[A=B]]")
QWEN2_JUDGE = ChatFormat(QWEN2_TEMPLATE, QWEN2.specials, eos="<|im_end|>", pad="<|endoftext|>", stop=("<|endoftext|>",),
                         added=(*JUDGE_LABELS, " maybe"))

# initializer_range 0.3 (not 0.02): logits that vary, so that two random models do not sample the same tokens.
SMALL = dict(hidden_size=32, num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
             max_position_embeddings=4096, initializer_range=0.3)


@dataclass(frozen=True)
class Model:
    """One checkpoint of the zoo: its family, its model class and config, its tokenizer's size."""

    fmt: ChatFormat
    model_class: str
    config: dict = field(default_factory=dict)
    vocab: int = 500
    layers: int = 1


ZOO = {
    # Aya Expanse / Aya 23 (Cohere, no qk-norm, tied embeddings, logit_scale) and Command R+ (qk-norm).
    "aya_expanse": Model(COHERE, "CohereForCausalLM", {"use_qk_norm": False, "logit_scale": 1.0}, vocab=620, layers=2),
    "command_r_plus": Model(COHERE, "CohereForCausalLM", {"use_qk_norm": True, "num_key_value_heads": 1}, vocab=540),
    "qwen2_5": Model(QWEN2, "Qwen2ForCausalLM", {"num_key_value_heads": 1, "tie_word_embeddings": False}, vocab=580),
    "llama3_1": Model(LLAMA3, "LlamaForCausalLM", {"num_key_value_heads": 1, "tie_word_embeddings": False}, vocab=660),
    "gemma2": Model(GEMMA, "Gemma2ForCausalLM", {"head_dim": 16, "num_key_value_heads": 1, "query_pre_attn_scalar": 16,
                                                  "sliding_window": 64}, vocab=700, layers=2),
    "weak_english": Model(SMOL, "LlamaForCausalLM", {"tie_word_embeddings": True}, vocab=400),
    "student": Model(COHERE, "CohereForCausalLM", {"use_qk_norm": False, "logit_scale": 1.0}, vocab=600, layers=2),
    "reward_model": Model(LLAMA3_REWARD, "LlamaForSequenceClassification", {"num_labels": 1, "tie_word_embeddings": False},
                          vocab=520),
    "judge": Model(QWEN2_JUDGE, "Qwen2ForCausalLM", {"tie_word_embeddings": False}, vocab=1000),
}


def seed_texts() -> list[str]:
    """The bundled prompts and references of all 23 languages: every model's tokenizer learns its merges from them."""
    texts = []
    for path in sorted(SEED_PROMPTS.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            texts += [row["text"], row.get("reference") or ""]
    return texts


def build_tokenizer(texts: list[str], fmt: ChatFormat, vocab_size: int, out: Path) -> PreTrainedTokenizerFast:
    """A byte-level BPE with the family's special tokens, BOS handling and chat template, saved in `out`."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(fmt.specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(texts, trainer=trainer)
    if fmt.bos is not None:  # like the published tokenizers: encode() prepends BOS unless add_special_tokens=False
        backend.post_processor = processors.TemplateProcessing(
            single=f"{fmt.bos} $A", pair=f"{fmt.bos} $A {fmt.bos} $B", special_tokens=[(fmt.bos, backend.token_to_id(fmt.bos))])
    if fmt.added:
        backend.add_tokens(list(fmt.added))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=fmt.bos, eos_token=fmt.eos, pad_token=fmt.pad,
        model_max_length=4096, chat_template=fmt.template,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.save_pretrained(out)
    return tokenizer


def save_model(name: str, spec: Model, tokenizer: PreTrainedTokenizerFast, out: Path, seed: int) -> Path:
    """A random checkpoint of `spec` (seeded), its tokenizer and its generation config, saved with save_pretrained."""
    ids = lambda tokens: [tokenizer.convert_tokens_to_ids(t) for t in tokens]  # noqa: E731
    config_class = getattr(transformers, spec.model_class).config_class
    config = config_class(
        **(SMALL | spec.config), num_hidden_layers=spec.layers,
        vocab_size=-(-len(tokenizer) // 64) * 64,  # embeddings padded past the tokenizer, as Qwen2.5 and Gemma2 are
        bos_token_id=tokenizer.bos_token_id, eos_token_id=ids([tokenizer.eos_token, *spec.fmt.stop]),
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = getattr(transformers, spec.model_class)(config)
    if name == "judge":
        judge_bias(model, ids(spec.fmt.added), seed)
    if hasattr(model, "generation_config") and model.can_generate():
        model.generation_config = GenerationConfig(
            bos_token_id=tokenizer.bos_token_id, eos_token_id=ids([tokenizer.eos_token, *spec.fmt.stop]),
            pad_token_id=tokenizer.pad_token_id, do_sample=True, temperature=0.6, top_p=0.9,
        )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def judge_bias(model, token_ids: list[int], seed: int) -> None:
    """Give the label tokens (and one filler) large random output rows: the judge's greedy answer then is mostly labels,
    which one depending on its input, and sometimes only filler, so verdicts are parsed and unparsed, wins and losses."""
    rows = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        weight = model.get_output_embeddings().weight
        for token in token_ids:
            weight[token] = torch.randn(weight.shape[1], generator=rows)


def build_zoo(root: Path) -> dict[str, Path]:
    """Every checkpoint of ZOO under `root`, by name."""
    texts = seed_texts()
    # A real judge's tokenizer knows English prose: trained on the judge prompt too, it reads it in ~200 tokens, not
    # ~650, which is most of the zoo test's judging time.
    judge_texts = texts + [ARENA_HARD_SYSTEM, ARENA_HARD_USER] * 20
    out = {}
    for seed, (name, spec) in enumerate(ZOO.items()):
        tokenizer = build_tokenizer(judge_texts if name == "judge" else texts, spec.fmt, spec.vocab, root / name)
        out[name] = save_model(name, spec, tokenizer, root / name, seed)
    return out
