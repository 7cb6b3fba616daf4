"""The chat format of a base model, taken from its tokenizer's own chat template.

Training and serving must agree on where an assistant turn ends. ``tokenizer.eos_token`` is not a safe
guide: transformers 5.17 converts SmolLM2's GGUF tokenizer with eos ``<|im_start|>`` and no pad token,
5.19 with ``<|im_end|>`` for both, and a model trained to end on the former never stops. So the end of a
turn is read off the template: render an assistant message and take the special token that follows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

SENTINEL = "\u2063bcomc-answer\u2063"  # text no template rewrites


def end_of_turn(tokenizer: Any) -> str:  # a transformers tokenizer (untyped duck)
    """The special token the chat template writes right after an assistant message (e.g. ``<|im_end|>``,
    ``<|eot_id|>``); the tokenizer's eos token when the template writes none."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "?"}, {"role": "assistant", "content": SENTINEL}], tokenize=False
    )
    after = text.split(SENTINEL, 1)[1] if SENTINEL in text else ""
    specials: list[str] = sorted(
        {*tokenizer.all_special_tokens, *tokenizer.get_added_vocab()}, key=len, reverse=True
    )
    rest = after.lstrip()
    for tok in specials:
        if tok and rest.startswith(tok):
            return tok
    if tokenizer.eos_token:
        return cast(str, tokenizer.eos_token)
    raise ValueError(
        "the chat template ends an assistant turn with no special token, and there is no eos token"
    )


def encode_pairs(
    tokenizer: Any, pairs: Sequence[tuple[str, str]], max_length: int
) -> tuple[list[dict[str, list[int]]], int]:
    """Each (question, answer) as the chat template renders it; the loss sees only the assistant's part
    (answer and end-of-turn token). Returns the rows and how many were cut to ``max_length`` tokens (a cut
    that leaves no answer token drops the example)."""
    eot = end_of_turn(tokenizer)
    rows, truncated = [], 0
    for question, answer in pairs:
        user = [{"role": "user", "content": question}]
        prompt = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(
            [*user, {"role": "assistant", "content": answer}], tokenize=False
        )
        reply = full[len(prompt) :] if full.startswith(prompt) else answer + eot
        if eot not in reply:
            reply += eot
        reply = reply[: reply.index(eot) + len(eot)]  # what follows the end token is never generated
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        reply_ids = tokenizer(reply, add_special_tokens=False)["input_ids"]
        ids, labels = prompt_ids + reply_ids, [-100] * len(prompt_ids) + reply_ids
        if len(ids) > max_length:
            truncated += 1
            ids, labels = ids[:max_length], labels[:max_length]
            if all(t == -100 for t in labels):  # the prompt alone fills max_length: nothing to learn from it
                continue
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    if not rows:
        raise ValueError(
            f"finetune.max_length: {max_length} tokens leave no answer token in any example; raise it"
        )
    return rows, truncated
