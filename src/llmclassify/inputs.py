"""From texts to model inputs, shared by training and inference: an optional prompt template,
tokenizing, truncation, the reference's visible padding, and length-bucketed batches.

Prediction imports this module, never the training loop: a text is encoded the same way
whichever side reads it.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import UserError
from .tokenizer import pad_batch

__all__ = ["apply_padding", "apply_template", "check_template", "encode_texts", "length_batches", "pad_batch"]


def check_template(template: str | None) -> None:
    """A template must hold `{text}` once and no other field (`{{`/`}}` are literal braces)."""
    if template is None:
        return
    import string

    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise UserError(f"--template: {e}") from None
    if fields != ["text"]:
        raise UserError("--template must contain {text} exactly once and no other {field}, "
                        "e.g. 'Message: {text}\\nCategory:'")


def apply_template(texts: Sequence[str], template: str | None) -> list[str]:
    """Each text put into `template` ('Review: {text}\\nSentiment:'), or unchanged."""
    if template is None:
        return list(texts)
    return [template.format(text=t) for t in texts]


def encode_texts(tok, texts: Sequence[str], max_len: int, template: str | None = None
                 ) -> tuple[list[list[int]], list[bool]]:
    """Token ids cut to `max_len`, and which texts were cut. An empty text becomes the pad
    token alone, so every text has a token to pool."""
    raw = tok.encode_batch(apply_template(texts, template))
    return [x[:max_len] or [tok.pad_id] for x in raw], [len(x) > max_len for x in raw]


def apply_padding(ids: list[list[int]], length: int | None, pad_id: int) -> list[list[int]]:
    """The reference's visible padding: every text is cut or padded with `pad_id` to `length`
    and the pad tokens are ordinary input (attended to, and the last one pooled). `None`
    (padding 'batch') leaves texts alone: per-batch padding is masked and changes nothing."""
    if length is None:
        return ids
    return [x[:length] + [pad_id] * (length - len(x[:length])) for x in ids]


def length_batches(lengths, max_batch: int, max_tokens: int | None = None) -> list[list[int]]:
    """Indices sorted by length and cut into batches of at most max_batch texts and
    max_tokens padded tokens: little padding, and long texts get smaller batches."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, cur, cur_max = [], [], 0
    for i in order:
        m = max(cur_max, lengths[i])
        if cur and (len(cur) >= max_batch or (max_tokens and m * (len(cur) + 1) > max_tokens)):
            batches.append(cur)
            cur, m = [], lengths[i]
        cur.append(i)
        cur_max = m
    if cur:
        batches.append(cur)
    return batches
