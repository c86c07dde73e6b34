"""Assistant-only SFT labels for any model's chat template, marked or not.

Which tokens an assistant turn trains (`tokenize_dialogues`), in this order:
1. the template's own `{% generation %}` markers, when it has them (make-tiny's does);
2. the markers of TRL's training version of the template, for the families TRL knows (Qwen 2.5/3,
   Llama 3, Gemma, Phi-3, DeepSeek, GLM-4, …; TRL's `get_training_chat_template`, which SFTTrainer
   itself swaps in): exactly what `assistant_only_loss` did before, templates that are not
   prefix-preserving (Qwen3's) included;
3. for any other template (SmolLM2's ChatML, a Llama 2 or Mistral template, a custom one), the
   prefix method below, on the model's own template.

The prefix method (`tokenize_with_assistant_mask`) renders the dialogue prefix by prefix: up to an
assistant turn with the generation prompt (what the model reads when asked to answer) and through
that turn. When each rendering is the start of the next (the template is prefix-preserving), the
characters the turn adds after the generation prompt are what the model must write: the answer and
what closes the turn. The tokens starting in those characters are trained, up to and including the
last special token among them (the end of turn: `<|im_end|>`, `<|eot_id|>`, `</s>`), so the model
learns to stop; what follows it (ChatML's newline) is not, nor is any other token: system, user,
role headers. A template that writes no special token at the end of a turn has the whole turn
trained, and the model learns to stop only if the template writes the end-of-turn inside the turn.
A template that is not prefix-preserving raises EngineError (the run exits 2).

The whole dialogue is tokenized once (as `apply_chat_template(..., tokenize=True)` does: no special
tokens added beyond what the template writes) and tokens are mapped to characters through the
tokenizer's offsets. A token BPE merged across the header and the answer starts in the header and is
not trained.
"""

from __future__ import annotations

from typing import Any

from training.engine.errors import EngineError

NOT_PREFIX_PRESERVING = (
    "the chat template is not prefix-preserving, so the assistant's tokens can't be masked"
)


def tokenize_dialogues(
    tokenizer, dialogues: list[list[dict[str, str]]], *, where: str
) -> list[tuple[list[int], list[int]]]:
    """Tokenize each dialogue with its assistant mask (1 = trained); see the module docstring for how.

    Raise EngineError naming `where` and the dialogue (1-based) when one can't be masked.
    """
    if not tokenizer.chat_template:
        raise EngineError("the model's tokenizer has no chat template to render the dialogues with")
    marked = marked_template(tokenizer)
    rows = []
    for number, messages in enumerate(dialogues, start=1):
        try:
            if marked is None:
                rows.append(tokenize_with_assistant_mask(tokenizer, messages))
            else:
                rows.append(_tokenize_marked(tokenizer, messages, marked))
        except EngineError as error:
            raise EngineError(f"{where} dialogue {number}: {error}") from None
    return rows


def marked_template(tokenizer) -> str | None:
    """Return the template whose `{% generation %}` markers say what to train, or None.

    The model's own template when it is marked (and, if it renders tools, prefix-preserving), else
    TRL's training version of it for a family TRL knows, else None: use the prefix method.
    """
    from jinja2 import TemplateError
    from trl.chat_template_utils import get_training_chat_template

    try:
        patched = get_training_chat_template(tokenizer)
    except (ValueError, TemplateError):  # a template TRL has no training version of
        return None
    own = tokenizer.chat_template
    return patched if patched is not None else own["default"] if isinstance(own, dict) else own


def _tokenize_marked(tokenizer, messages: list[dict[str, str]], template: str) -> tuple[list[int], list[int]]:
    from jinja2 import TemplateError

    try:
        encoded = tokenizer.apply_chat_template(
            messages,
            chat_template=template,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
    except TemplateError as error:
        raise EngineError(f"the chat template refused a dialogue: {error}") from None
    if 1 not in encoded["assistant_masks"]:
        raise EngineError("the chat template's {% generation %} markers mark no assistant token")
    return list(encoded["input_ids"]), list(encoded["assistant_masks"])


def tokenize_with_assistant_mask(tokenizer, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """Tokenize the dialogue as the model's own chat template renders it; return (input_ids, mask).

    The prefix method (module docstring): mask 1 = trained. Raise EngineError when the template has
    none, refuses the dialogue, or is not prefix-preserving.
    """
    if not tokenizer.chat_template:
        raise EngineError("the model's tokenizer has no chat template to render the dialogues with")
    text = _render(tokenizer, messages, add_generation_prompt=False)
    spans = []  # (first, last + 1) character of each assistant turn after its generation prompt
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:index], add_generation_prompt=True)
        through = _render(tokenizer, messages[: index + 1], add_generation_prompt=False)
        _require_prefix(
            prompt, through, f"messages[:{index}] with the generation prompt", f"messages[:{index + 1}]"
        )
        _require_prefix(through, text, f"messages[:{index + 1}]", f"all {len(messages)} messages")
        spans.append((len(prompt), len(through)))

    try:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError:
        raise EngineError(
            "the model's tokenizer gives no character offsets (a slow tokenizer), so the assistant's "
            "tokens can't be located; save the model with its fast tokenizer (tokenizer.json)"
        ) from None
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    special = special_token_ids(tokenizer)
    mask = [0] * len(ids)
    for start, end in spans:
        turn = [i for i, (first, _) in enumerate(offsets) if start <= first < end]
        turn_ends = [i for i in turn if ids[i] in special]
        for i in turn:
            if not turn_ends or i <= turn_ends[-1]:
                mask[i] = 1
    return ids, mask


def special_token_ids(tokenizer) -> set[int]:
    """Return the ids of the tokenizer's special tokens (bos, eos, pad, and added special tokens)."""
    added = {index for index, token in tokenizer.added_tokens_decoder.items() if token.special}
    return added | set(tokenizer.all_special_ids)


def _render(tokenizer, messages: list[dict[str, Any]], *, add_generation_prompt: bool) -> str:
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )
    except TemplateError as error:
        raise EngineError(f"the chat template refused a dialogue: {error}") from None


def _require_prefix(shorter: str, longer: str, shorter_name: str, longer_name: str) -> None:
    if longer.startswith(shorter):
        return
    at = next((i for i, (a, b) in enumerate(zip(shorter, longer, strict=False)) if a != b), len(longer))
    raise EngineError(
        f"{NOT_PREFIX_PRESERVING}: rendered alone, {shorter_name} reads {shorter[max(0, at - 30) : at + 30]!r} "
        f"at character {at}, but rendering {longer_name} gives {longer[max(0, at - 30) : at + 30]!r} there"
    )
