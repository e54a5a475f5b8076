"""`llmclassify experiments`: the rows of the book's fine-tuning experiment table, re-run.

The book (ch. 6 bonus material) varies one choice at a time from its main recipe on SMS spam
with GPT-2 124M and reports train / validation / test accuracy. Each row here is the
`--preset reference` recipe plus that row's overrides, run on the model you choose; rows that
name another model size (gpt2-medium, -xl) run only when that model is the one chosen. The
result is a Markdown table (and JSON) in the output directory, next to the book's figures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from .checkpoint import atomic_write_json, prepare_run_dir
from .errors import UserError
from .files import atomic_write_bytes


@dataclass(frozen=True)
class Row:
    name: str
    what: str
    overrides: dict = field(default_factory=dict)
    book_test_acc: float | None = None  # GPT-2 124M, from the book's table
    default: bool = True  # part of a plain `llmclassify experiments` run
    note: str = ""


# The book's rows that are choices of method (not of model size), as overrides of the preset.
ROWS: tuple[Row, ...] = (
    Row("reference", "last real token, last block (`--preset reference`)", {}, 98.33,
        note="book: its 'last non-padding token' row"),
    Row("book-padding", "eos padding to the longest training text is visible input and the final pad is "
        "pooled (the book's main recipe)", {"padding": "longest-train"}, 95.00),
    Row("first-token", "first token instead of last", {"pooling": "first"}, 75.00),
    Row("head-only", "only the new head trains", {"trainable": "head"}, 72.00),
    Row("last-2-blocks", "last two blocks train", {"trainable": "last-2-blocks"}, 98.33),
    Row("all-layers", "every layer trains (1 epoch: nothing to cache, the whole model trains)",
        {"trainable": "all", "epochs": 1}, 96.67, note="book: 5 epochs"),
    Row("lora", "LoRA (rank 16, alpha 16) on every block's attention and MLP, head + final norm",
        {"trainable": "lora", "lora_rank": 16, "lora_alpha": 16,
         "lora_targets": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")},
        96.67),
    Row("lora-top", "LoRA on the top 4 blocks only (the trunk below stays cached)",
        {"trainable": "lora", "lora_rank": 16, "lora_alpha": 16, "lora_blocks": -4,
         "lora_targets": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")},
        None),
    Row("random-weights", "same architecture, random weights, every layer trains (1 epoch)",
        {"trainable": "all", "epochs": 1, "random_init": True}, 93.67, note="book: 5 epochs"),
    Row("pad-1024", "every text padded to 1024 tokens, visible padding", {"padding": "fixed:1024"}, 78.33,
        default=False, note="costly on a CPU: 1,024 tokens a text"),
    Row("no-causal-mask", "no causal mask (every real token sees every real token)", {"causal": False}, 95.33,
        note="book: with visible padding"),
    Row("mean-pooling", "mean of all real tokens instead of the last", {"pooling": "mean"}, 96.33),
)
ROW_NAMES = tuple(r.name for r in ROWS)


def select_rows(names: list[str] | None) -> list[Row]:
    if not names:
        return [r for r in ROWS if r.default]
    by_name = {r.name: r for r in ROWS}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise UserError(f"unknown experiment row '{unknown[0]}' (rows: {', '.join(ROW_NAMES)})")
    return [by_name[n] for n in names]


def run_experiments(model: str, data: str, out_dir: Path, rows: list[str] | None = None, *,
                    epochs: int | None = None, progress: bool = True, overwrite: bool = False) -> list[dict]:
    """Train each selected row with the reference recipe + its overrides; write the table."""
    from .train import TrainConfig, train, with_preset

    out_dir = Path(out_dir)
    prepare_run_dir(out_dir, overwrite=overwrite)
    results, caches = [], {}  # rows with the same frozen trunk share its cache
    for row in select_rows(rows):
        overrides = dict(row.overrides)
        random_init = overrides.pop("random_init", False)
        if epochs is not None and "epochs" not in row.overrides:
            overrides["epochs"] = epochs
        base = with_preset(TrainConfig(model=model, data=data, progress=progress), "reference")
        cfg = TrainConfig(**(base.to_dict() | overrides | {
            "output_dir": str(out_dir / row.name), "extra": {"random_init": random_init}}))
        if progress:
            print(f"\n== {row.name}: {row.what}", flush=True)
        t = time.perf_counter()
        summary = train(cfg, shared_caches=caches)
        s = summary["splits"]
        results.append({
            "row": row.name, "what": row.what, "note": row.note, "book_test_acc": row.book_test_acc,
            "train_acc": s["train"]["accuracy"], "val_acc": s["val"]["accuracy"], "test_acc": s["test"]["accuracy"],
            "minutes": (time.perf_counter() - t) / 60, "epochs": summary["epochs_run"],
        })
        write_table(out_dir, model, data, results)  # after every row: a stopped run keeps its rows
    for splits in caches.values():
        for cache in splits.values():
            cache.close()
    return results


def format_table(model: str, data: str, results: list[dict]) -> str:
    lines = [
        f"Model `{model}`, data `{data}`, the reference recipe (`--preset reference`) plus each row's change.",
        "Book: GPT-2 124M test accuracy from the book's table.",
        "",
        "| row | change | train acc | val acc | test acc | book test acc | time (min) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        book = f"{r['book_test_acc']:.2f}%" if r["book_test_acc"] is not None else "-"
        what = r["what"] + (f" ({r['note']})" if r["note"] else "")
        lines.append(f"| {r['row']} | {what} | {100 * r['train_acc']:.2f}% | {100 * r['val_acc']:.2f}% | "
                     f"{100 * r['test_acc']:.2f}% | {book} | {r['minutes']:.1f} |")
    return "\n".join(lines) + "\n"


def write_table(out_dir: Path, model: str, data: str, results: list[dict]) -> None:
    atomic_write_bytes(out_dir / "experiments.md", format_table(model, data, results).encode())
    atomic_write_json(out_dir / "experiments.json", {"model": model, "data": data, "rows": results})
