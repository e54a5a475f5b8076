"""The bag-of-words baseline every run is shown beside: TF-IDF + logistic regression.

Word 1-2 grams with sublinear term frequency (scikit-learn's TfidfVectorizer), a multinomial
logistic regression whose C is chosen by cross-validated macro-F1 over train + validation (the
same folds and the same data budget as the probe search), refitted on train + validation.
Seconds on a few thousand short texts; more on long ones with many classes: 78 s for 2,285
20newsgroups posts (20 classes, 300,034 n-grams; 399 s before its regressions were solved by
Newton-CG, probes.SPARSE_SOLVER). Saved in the run as `baseline.json` (vocabulary and idf) and
`baseline.safetensors` (the linear weights): no pickle, and `evaluate` / `serve` score it
again on any text.

The same model over more n-grams can be the search's hybrid partner (`--hybrid-ngrams
words+chars`, `HYBRID_NGRAMS`): word 1-2 grams and character 2-5 grams within words, each
part's TF-IDF normalised on its own and the two side by side (scikit-learn's FeatureUnion of
two TfidfVectorizers). Alone it led the word model out of fold on nine splits of ten; as the
hybrid's partner it moved the pick's test macro-F1 by +0.002 on average, from -0.026 (ATIS) to
+0.027 (reuters-r8), for 3-6x the baseline's seconds (benchmarks/results/hybrid-char.md): an
option, not the default. The baseline every run is shown beside stays the word model
(`BASELINE`). A hybrid run with that partner saves it as `hybrid_ngrams.json` / `.safetensors`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError

# The baseline's C, by the search's folds over this fixed grid: it is the reference every figure
# is read against, so it stays the conventional model. (Grown past its end like a probe's grid,
# reuters-r8's went from C 100 to 10,000: CV macro-F1 0.853 -> 0.901, test 0.890 -> 0.856.)
C_GRID = (1.0, 10.0, 100.0)
NAME = "TF-IDF + logistic regression"
PARTNER_NAME = "TF-IDF (words + characters) + logistic regression"
WORDS = ("word", (1, 2))  # (scikit-learn analyzer, n-gram range): one part of the TF-IDF features
CHARACTERS = ("char_wb", (2, 5))
BASELINE = (WORDS,)
HYBRID_NGRAMS = (WORDS, CHARACTERS)
FILE_STEM = "baseline"
PARTNER_STEM = "hybrid_ngrams"


def _part_vectorizer(part):
    from sklearn.feature_extraction.text import TfidfVectorizer

    analyzer, ngram_range = part
    return TfidfVectorizer(analyzer=analyzer, ngram_range=tuple(ngram_range), sublinear_tf=True, min_df=1,
                           dtype=np.float32)


def vectorizer(parts=BASELINE):
    """The TF-IDF features of `parts`: one TfidfVectorizer, or a FeatureUnion of one per part."""
    from sklearn.pipeline import FeatureUnion

    if len(parts) == 1:
        return _part_vectorizer(parts[0])
    return FeatureUnion([(f"{part[0]}{i}", _part_vectorizer(part)) for i, part in enumerate(parts)])


def _fitted_parts(vec) -> list:
    """The fitted TfidfVectorizer of each part, in order."""
    return [vec] if not hasattr(vec, "transformer_list") else [v for _, v in vec.transformer_list]


def _vocabulary_list(vec) -> list[str]:
    vocab = [None] * len(vec.vocabulary_)
    for term, i in vec.vocabulary_.items():
        vocab[i] = term
    return vocab




@dataclass
class Baseline:
    """A fitted TF-IDF + logistic regression over the n-gram `parts` (BASELINE, HYBRID_NGRAMS)."""

    vocabulary: list[str]  # every part's terms, one after the other
    idf: np.ndarray  # (V,)
    weight: np.ndarray  # (C, V)
    bias: np.ndarray  # (C,)
    C: float
    parts: tuple = BASELINE
    sizes: tuple = ()  # terms per part (one part: all of them)
    name: str = NAME

    def transform(self, texts):
        """Sparse (N, V) TF-IDF rows, as the fitted vectorizer would give them: per part, counts
        over its vocabulary, sublinear tf times idf, L2-normalised; the parts side by side."""
        import scipy.sparse as sp
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.preprocessing import normalize

        texts, out, start = list(texts), [], 0
        for (analyzer, ngram_range), size in zip(self.parts, self.sizes or (len(self.vocabulary),)):
            vocab = {t: i for i, t in enumerate(self.vocabulary[start:start + size])}
            counts = CountVectorizer(analyzer=analyzer, ngram_range=tuple(ngram_range), vocabulary=vocab,
                                     dtype=np.float32)
            tf = counts.transform(texts)  # raw counts over the fitted vocabulary
            tf.data = 1.0 + np.log(tf.data)  # sublinear tf
            out.append(normalize(tf.multiply(self.idf[start:start + size]).tocsr(), norm="l2"))
            start += size
        return out[0] if len(out) == 1 else sp.hstack(out, format="csr")

    def logits(self, texts) -> np.ndarray:
        texts = list(texts)
        if not texts:  # an empty split (--split 0.9,0.1,0): scikit-learn refuses zero rows
            return np.zeros((0, len(self.bias)), dtype=np.float32)
        return np.asarray(self.transform(texts) @ self.weight.T) + self.bias

    def proba(self, texts) -> np.ndarray:
        from .probes import softmax

        return softmax(self.logits(texts))

    # --- run directory ---------------------------------------------------------------------
    def save(self, run_dir: Path, stem: str = FILE_STEM) -> None:
        """`stem`.json (parts, vocabulary, C) and `stem`.safetensors (idf, weights) in `run_dir`."""
        from safetensors.numpy import save

        from .files import atomic_write_bytes

        run_dir = Path(run_dir)
        atomic_write_bytes(run_dir / f"{stem}.safetensors", save({"idf": self.idf.astype(np.float32),
                                                                   "weight": self.weight.astype(np.float32),
                                                                   "bias": self.bias.astype(np.float32)}))
        meta = {"name": self.name, "sublinear_tf": True, "C": self.C,
                "parts": [{"analyzer": a, "ngram_range": list(r), "terms": n}
                          for (a, r), n in zip(self.parts, self.sizes or (len(self.vocabulary),))],
                "vocabulary": self.vocabulary}
        atomic_write_bytes(run_dir / f"{stem}.json", json.dumps(meta).encode())

    @classmethod
    def load(cls, run_dir: Path, stem: str = FILE_STEM) -> Baseline | None:
        """The run's baseline (`stem` PARTNER_STEM: a hybrid's partner), or None when the run has
        none (`--baseline none`; a partner: a run that is no hybrid, or saved before partners)."""
        from safetensors.numpy import load

        path = Path(run_dir) / f"{stem}.json"
        if not path.exists():
            return None
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            t = load((Path(run_dir) / f"{stem}.safetensors").read_bytes())
            # runs saved before parts: word 1-2 grams
            parts = meta.get("parts") or [{"analyzer": "word", "ngram_range": [1, 2], "terms": len(meta["vocabulary"])}]
            return cls(list(meta["vocabulary"]), t["idf"], t["weight"], t["bias"], float(meta["C"]),
                       parts=tuple((p["analyzer"], tuple(p["ngram_range"])) for p in parts),
                       sizes=tuple(int(p["terms"]) for p in parts), name=meta.get("name", NAME))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UserError(f"{path}: unreadable baseline ({type(e).__name__}: {e})") from None


def fit(texts, y: np.ndarray, n_classes: int, C: float, parts=BASELINE) -> Baseline:
    """Fit the vectorizer of `parts` and the regression on `texts`."""
    from .probes import fit_logistic

    vec = vectorizer(parts)
    x = vec.fit_transform(list(texts))
    w, b = fit_logistic(x, y, n_classes, C)
    fitted = _fitted_parts(vec)
    return Baseline([t for v in fitted for t in _vocabulary_list(v)],
                    np.concatenate([v.idf_ for v in fitted]).astype(np.float32), w, b, C, parts=tuple(parts),
                    sizes=tuple(len(v.vocabulary_) for v in fitted), name=NAME if parts == BASELINE else PARTNER_NAME)


def out_of_fold(texts, y: np.ndarray, n_classes: int, folds, C_grid, parts=BASELINE) -> dict[float, np.ndarray]:
    """{C: (N, n_classes) probabilities} for every C of `C_grid`, each row from a baseline fitted
    without that row's fold: one vectorizer per fold, the grid along one LogisticPath."""
    from .probes import LogisticPath, softmax

    texts = np.asarray(list(texts), dtype=object)
    probs = {C: np.zeros((len(y), n_classes)) for C in C_grid}
    for held in folds:
        keep = np.ones(len(y), dtype=bool)
        keep[held] = False
        vec = vectorizer(parts)
        x, x_held = vec.fit_transform(texts[keep]), vec.transform(texts[held])
        path = LogisticPath(n_classes)
        for C in sorted(C_grid):
            w, b = path.fit(x, y[keep], C)
            probs[C][held] = softmax(np.asarray(x_held @ w.T) + b)
    return probs
