"""From texts to model inputs, shared by training and inference: an optional prompt template,
tokenizing, truncation, the reference's visible padding, and length-bucketed batches.

Prediction imports this module, never the training loop: a text is encoded the same way
whichever side reads it.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import UserError
from .tokenizer import pad_batch

__all__ = ["TEMPLATE_AUTO", "TRUNCATE", "apply_padding", "apply_template", "check_template", "cut_tokens", "encode_texts",
           "label_question", "length_batches", "pad_batch"]

TEMPLATE_AUTO = "auto"  # --template auto: the search tries the text as it is and label_question's template


def check_template(template: str | None) -> None:
    """A template must hold `{text}` once and no other field (`{{`/`}}` are literal braces),
    or be TEMPLATE_AUTO."""
    if template is None or template == TEMPLATE_AUTO:
        return
    import string

    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise UserError(f"--template: {e}") from None
    if fields != ["text"]:
        raise UserError("--template must contain {text} exactly once and no other {field}, "
                        "e.g. 'Message: {text}\\nCategory:'")


def label_question(labels: Sequence[str]) -> str:
    """The template `--template auto` tries: the text, then a question naming the labels
    ('{text}\\n\\nQuestion: Which of these is the text above: ham or spam?\\nAnswer:'); the last
    token's state then reads the text for this task (benchmarks/results/templates.md)."""
    names = [str(x).replace("{", "{{").replace("}", "}}") for x in labels]
    choices = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
    return "{text}\n\nQuestion: Which of these is the text above: " + choices + "?\nAnswer:"


def apply_template(texts: Sequence[str], template: str | None) -> list[str]:
    """Each text put into `template` ('Review: {text}\\nSentiment:'), or unchanged."""
    if template is None:
        return list(texts)
    return [template.format(text=t) for t in texts]


TRUNCATE = ("head", "head-tail")


def cut_tokens(ids: list[int], max_len: int, keep: str = "head") -> list[int]:
    """A text's ids cut to `max_len`: its first tokens (`head`), or its first quarter and last
    three quarters of the budget (`head-tail`: an article's opening and its conclusion; the
    split Sun et al. 2019 measured best for long reviews with BERT: 128 + 382 of 512)."""
    if len(ids) <= max_len:
        return ids
    if keep == "head-tail":
        head = max_len // 4
        return ids[:head] + ids[len(ids) - (max_len - head):]
    return ids[:max_len]


def encode_texts(tok, texts: Sequence[str], max_len: int, template: str | None = None, keep: str = "head"
                 ) -> tuple[list[list[int]], list[bool]]:
    """Token ids cut to `max_len` (`keep`: which tokens, see `cut_tokens`), and which texts
    were cut. An empty text becomes the pad token alone, so every text has a token to pool."""
    raw = tok.encode_batch(apply_template(texts, template))
    return [cut_tokens(x, max_len, keep) or [tok.pad_id] for x in raw], [len(x) > max_len for x in raw]


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
