"""Conversations as token ids, rendered alike by every command that reads them.

Every command renders a conversation with the model's own chat template (`render`). Where a reward
model's score sits (`render_scored`): PPO reads the reward model at the answer's end-of-turn token
(`<|im_end|>`, `<|eot_id|>`, `</s>`: the EOS the policy emits, or an unfinished answer's last token).
A template writes more after it (ChatML's newline), so a rendered conversation is cut right after
the final turn's last special token when only whitespace follows it; `reward` trains the score, and
`score` reads it, exactly where PPO looks.
"""

from __future__ import annotations

from typing import Any

from training.engine.chat_masks import special_token_ids
from training.engine.errors import EngineError

Messages = list[dict[str, Any]]


def render(tokenizer, messages: Messages, *, add_generation_prompt: bool = False) -> list[int]:
    """Tokenize the messages as the chat template renders them (no special token beyond the template's)."""
    from jinja2 import TemplateError

    try:
        encoded = tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, add_generation_prompt=add_generation_prompt
        )
    except TemplateError as error:
        raise EngineError(f"the chat template refused a conversation: {error}") from None
    return list(encoded["input_ids"])


def render_scored(tokenizer, messages: Messages, *, special_ids: set[int] | None = None) -> list[int]:
    """Render a conversation that ends with an answer, cut right after the answer's end-of-turn token.

    The end of turn is the last special token, when nothing but whitespace follows it (ChatML's
    `<|im_end|>` before its newline; Llama 3's `<|eot_id|>` and Llama 2's `</s>` end the rendering
    anyway). A template that closes no turn with a special token is left as it renders.
    """
    ids = render(tokenizer, messages)
    special = special_token_ids(tokenizer) if special_ids is None else special_ids
    last = next((i for i in range(len(ids) - 1, -1, -1) if ids[i] in special), None)
    if last is None or tokenizer.decode(ids[last + 1 :]).strip():
        return ids
    return ids[: last + 1]
