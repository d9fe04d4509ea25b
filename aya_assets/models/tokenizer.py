"""A byte-level BPE tokenizer for the tiny profile, trained on the bundled multilingual text."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD, BOS, END = "<|pad|>", "<|bos|>", "<|end|>"
SYSTEM, USER, ASSISTANT = "<|system|>", "<|user|>", "<|assistant|>"
SPECIAL_TOKENS = [PAD, BOS, END, SYSTEM, USER, ASSISTANT]

# `<|end|>` closes every turn and is the eos token, so generation stops where the assistant turn ends.
# The assistant's content and its `<|end|>` sit inside `{% generation %}`, so TRL's assistant-only loss
# also trains the model to stop.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "<|assistant|>{% generation %}{{ message['content'] }}<|end|>{% endgeneration %}"
    "{% elif message['role'] in ['system', 'user'] %}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{% else %}"
    "{{ raise_exception('unknown role: ' + message['role']) }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def train_tokenizer(
    texts: list[str], out_dir: Path, vocab_size: int = 4096, model_max_length: int = 256, max_token_length: int | None = None
) -> PreTrainedTokenizerFast:
    """Train byte-level BPE on `texts`, save it as a Hugging Face tokenizer in `out_dir` and return it.

    Digits are single tokens, so a number the model never saw is made of tokens it did see (a merged "47" would be
    one more token to memorise per number). `max_token_length` caps a token's length in bytes (byte-level symbols): with
    no cap, BPE over thousands of spelled-out numbers learns whole number words ("三百四十", "hundertsieben") as single
    tokens and a held-out number needs a token no train item taught.
    """
    # Byte-level: every script round-trips exactly, and text in no training language still encodes.
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        max_token_length=max_token_length,
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=END,
        pad_token=PAD,
        extra_special_tokens=[SYSTEM, USER, ASSISTANT],
        padding_side="left",  # decoder-only generation pads on the left
        model_max_length=model_max_length,
        chat_template=CHAT_TEMPLATE,
    )
    tokenizer.save_pretrained(out_dir)
    return tokenizer
