"""HH-RLHF style dialogue prompts: telling them apart, rendering them, and stopping at a new user turn.

The paper's main data (Wang et al., 2026) is Anthropic's HH-RLHF, whose prompts are already a dialogue in
plain text: ``"\\n\\nHuman: ...\\n\\nAssistant:"``. Two consequences, both handled here once for every
component (the calibrator, the Q-head trainer, ``generate_responses`` and best-of-N):

* **Rendering.** Wrapping such a prompt in a chat template nests one dialogue inside another user turn. The
  authors' rollout script feeds a prompt that holds ``Human:`` or ``Assistant:`` to the model as plain text
  and uses the chat template only for the others; :func:`render_prompt` with ``dialogue_as_text=True`` does
  the same (:func:`is_dialogue_prompt` is the test).
* **Stopping.** A base model continuing an HH dialogue often writes the user's next turn after its answer.
  The authors cut every rollout at the first new ``Human:`` / ``User:`` turn (their ``--stop_on_human``);
  :data:`STOP_STRINGS` are what ``generate`` stops on (transformers' ``stop_strings``) and
  :func:`cut_at_new_turn` trims the decoded text: everything from the newline before the new turn on goes,
  then trailing whitespace. Stopping early and cutting afterwards give the same text, because the cut is at
  the *first* new turn and ``generate`` draws the same random numbers for the other rows of a batch either way.

Plain functions, no model: every component imports them cheaply.
"""

from __future__ import annotations

import re
from typing import List, Sequence, Tuple

__all__ = [
    "DIALOGUE_MARKERS",
    "STOP_STRINGS",
    "is_dialogue_prompt",
    "render_prompt",
    "cut_at_new_turn",
    "cut_all_at_new_turn",
    "stop_strings_kwargs",
]

#: A prompt holding one of these is a dialogue written as text (HH-RLHF format).
DIALOGUE_MARKERS = ("Human:", "Assistant:")

#: Where ``generate`` stops when a new user turn begins (``stop_at_new_turn``).
STOP_STRINGS = ("\nHuman:", "\nUser:")

# A new user turn: a line break, optional blank space, "Human" or "User" (any case), optional blank space, ":".
_NEW_TURN = re.compile(r"\r?\n\s*(?:human|user)\s*:", flags=re.IGNORECASE)


def is_dialogue_prompt(prompt: str) -> bool:
    """Whether ``prompt`` already holds dialogue turns as text (``"Human:"`` or ``"Assistant:"``).

    Examples:

    ```python
    >>> from hf_stackshape.utils.dialogue import is_dialogue_prompt
    >>> is_dialogue_prompt("\\n\\nHuman: Hi there\\n\\nAssistant:"), is_dialogue_prompt("Hi there")
    (True, False)
    ```
    """
    return isinstance(prompt, str) and any(marker in prompt for marker in DIALOGUE_MARKERS)


def render_prompt(tokenizer, prompt: str, chat_template: bool, dialogue_as_text: bool = False) -> Tuple[str, bool]:
    """The base model's input text for ``prompt`` and whether the chat template made it.

    Args:
        tokenizer: the base model's tokenizer.
        prompt (`str`): the raw prompt.
        chat_template (`bool`): wrap the prompt as a user turn of the tokenizer's chat template (with the
            generation prompt).
        dialogue_as_text (`bool`, *optional*, defaults to `False`): leave a prompt that already holds
            ``Human:`` / ``Assistant:`` turns as plain text (the authors' rollouts, Wang et al., 2026).

    Returns:
        `(text, used_chat_template)`: a text prompt should be encoded with the tokenizer's special tokens
        (``add_special_tokens=True``), a templated one without (the template holds them).
    """
    if chat_template and not (dialogue_as_text and is_dialogue_prompt(prompt)):
        messages = [{"role": "user", "content": prompt}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), True
    return prompt, False


def cut_at_new_turn(text: str) -> str:
    """``text`` up to its first new user turn (a line break, then ``Human:`` or ``User:``, any case), with
    trailing whitespace removed; ``text`` unchanged when it holds no new turn.

    Examples:

    ```python
    >>> from hf_stackshape.utils.dialogue import cut_at_new_turn
    >>> cut_at_new_turn("Sure, here it is.\\n\\nHuman: thanks!\\n\\nAssistant: welcome")
    'Sure, here it is.'
    >>> cut_at_new_turn("A human: one person.")
    'A human: one person.'
    ```
    """
    match = _NEW_TURN.search(text)
    return text if match is None else text[: match.start()].rstrip()


def cut_all_at_new_turn(texts: Sequence[str], enabled: bool = True) -> List[str]:
    """:func:`cut_at_new_turn` on every text (``enabled=False``: the texts unchanged)."""
    return [cut_at_new_turn(t) for t in texts] if enabled else list(texts)


def stop_strings_kwargs(tokenizer, enabled: bool) -> dict:
    """``generate`` keyword arguments that stop a row at :data:`STOP_STRINGS` (empty when not ``enabled``).

    Stopping is only a saving: the text is still cut with :func:`cut_at_new_turn`, which also catches the
    forms the stop strings miss (``"\\n  human :"``)."""
    if not enabled:
        return {}
    return {"stop_strings": list(STOP_STRINGS), "tokenizer": tokenizer}

