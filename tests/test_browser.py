"""The web page in a real browser: Playwright driving Debian's Chromium against a real uvicorn
server on a loopback port, serving the tiny trained run.

Skipped when /usr/bin/chromium is missing (`apt-get install -y chromium`). Set
LLMCLASSIFY_SCREENSHOT=1 to save docs/img/serve-page.png.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "img" / "serve-page.png"

if not os.path.exists(CHROMIUM) and os.environ.get("LLMCLASSIFY_REQUIRE_BROWSER") == "1":
    pytest.fail(f"{CHROMIUM} not found and CI requires the browser test", pytrace=False)
if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} not found: install it with `apt-get install -y chromium`",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")
uvicorn = pytest.importorskip("uvicorn")

from llmclassify.predict import Classifier  # noqa: E402
from llmclassify.serve import create_app  # noqa: E402
from llmclassify.train import train  # noqa: E402

from .conftest import tiny_train_config  # noqa: E402

SPAM = ("WINNER!! As a valued network customer you have been selected to receive a £900 prize "
        "reward! To claim call 09061701461. Claim code KL341. Valid 12 hours only.")


@pytest.fixture(scope="module")
def clf(request):
    """The tiny run; LLMCLASSIFY_BROWSER_RUN=DIR runs the same test on a real trained run
    (that is how docs/img/serve-page.png was taken, with LLMCLASSIFY_SCREENSHOT=1)."""
    run = os.environ.get("LLMCLASSIFY_BROWSER_RUN")
    return Classifier.load(run or request.getfixturevalue("tiny_run"))


@contextlib.contextmanager
def serving(clf):
    """uvicorn in a thread on a pre-bound free loopback port; yields the base URL."""
    app = create_app(clf, max_chars=500)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_keep_alive=2)
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, through Playwright: one per module (Playwright's sync API
    runs one at a time in a thread)."""
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=30_000)
        try:
            yield chromium
        finally:
            chromium.close()


@contextlib.contextmanager
def browsing(browser, server):
    """A fresh page on `server`'s page, loaded and ready."""
    context = browser.new_context(viewport={"width": 900, "height": 900})
    try:
        pg = context.new_page()
        pg.set_default_timeout(15_000)
        # Loopback only: any request elsewhere fails the test rather than leaving the box.
        outside = []

        def guard(route):
            url = route.request.url
            if url.startswith(server) or url.startswith("data:"):
                return route.continue_()
            outside.append(url)
            return route.abort()

        pg.route("**/*", guard)
        pg.goto(server + "/")
        pg.wait_for_selector("body[data-ready='1']")
        yield pg
        assert not outside, f"page tried to reach {outside}"
    finally:
        context.close()


@pytest.fixture(scope="module")
def server(clf):
    with serving(clf) as url:
        yield url


@pytest.fixture(scope="module")
def page(browser, server):
    with browsing(browser, server) as pg:
        yield pg


def read_result(pg):
    label = pg.inner_text("#label")
    rows = pg.eval_on_selector_all(
        ".prob", "rs => rs.map(r => [r.dataset.label, Number(r.dataset.probability),"
                 " r.querySelector('.value').textContent])")
    return label, rows


def classify_in_page(pg, text):
    pg.evaluate("document.body.dataset.state = ''")
    pg.fill("#text", text)
    pg.click("#classify")
    pg.wait_for_selector("body[data-state='done'], body[data-state='error']")
    assert pg.get_attribute("body", "data-state") == "done", pg.inner_text("#error")


def assert_page_matches(pg, clf, text):
    want = clf.predict([text])[0]
    label, rows = read_result(pg)
    assert label == want.label
    assert [r[0] for r in rows] == list(clf.labels)
    for name, p, shown in rows:
        assert p == pytest.approx(want.probabilities[name], rel=1e-5, abs=1e-6)
        assert shown == f"{100 * p:.2f}%"
    top = pg.eval_on_selector(".prob.top", "r => r.dataset.label")
    assert top == want.label


def test_classify_typed_message(page, clf):
    classify_in_page(page, SPAM)
    assert_page_matches(page, clf, SPAM)
    assert page.is_visible("#result") and not page.is_visible("#error")
    # bar widths follow the probabilities
    widths = page.eval_on_selector_all(".prob .fill", "fs => fs.map(f => parseFloat(f.style.width))")
    _, rows = read_result(page)
    for w, (_, p, _) in zip(widths, rows):
        assert w == pytest.approx(100 * p, abs=0.01)
    if os.environ.get("LLMCLASSIFY_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_examples_are_clickable(page, clf):
    """The examples are the run's own test texts (not built into the page), tagged with their labels."""
    split = json.loads((clf.run_dir / "split.json").read_text(encoding="utf-8"))
    label_of = {t: split["labels"][y] for t, y in zip(split["test"]["texts"], split["test"]["labels"])}
    shown = page.eval_on_selector_all(".example", "bs => bs.map(b => [b.dataset.kind, b.title])")
    assert {kind for kind, _ in shown} == {"spam", "ham"}
    assert all(label_of[text] == kind for kind, text in shown)
    assert "test split, which the model was not trained on" in page.inner_text("#examples-hint")
    ham = page.locator(".example[data-kind='ham']").first
    full_text = ham.get_attribute("title")
    page.evaluate("document.body.dataset.state = ''")
    ham.click()
    page.wait_for_selector("body[data-state='done']")
    assert page.input_value("#text") == full_text
    assert_page_matches(page, clf, full_text)


def test_errors_are_shown(page, clf):
    page.fill("#text", "   ")
    page.click("#classify")
    assert "Type a message" in page.inner_text("#error")
    # over the server's character limit: truncated if the run allows it, else the server's 413
    long_text = SPAM + " call now" * 80
    page.evaluate("document.body.dataset.state = ''")
    page.fill("#text", long_text)
    page.click("#classify")
    page.wait_for_selector("body[data-state='done'], body[data-state='error']")
    if clf.info()["truncation"]:
        assert "truncated" in page.inner_text("#note")
    else:
        assert "limit is 500" in page.inner_text("#error")


def test_model_line_shows_the_baseline_beside_the_run(page, clf):
    line = page.inner_text("#model-line")
    test_acc = clf.metrics["splits"]["test"]["accuracy"]
    base_acc = clf.metrics["baseline"]["splits"]["test"]["accuracy"]
    assert f"test accuracy {100 * test_acc:.2f}%" in line
    assert f"TF-IDF baseline {100 * base_acc:.2f}%" in line
    gap = clf.metrics["baseline"]["test_difference"]
    assert (f"difference {gap['macro_f1_difference']:+.3f}, 95% interval {gap['interval'][0]:+.3f} to "
            f"{gap['interval'][1]:+.3f}") in line
    assert f"recipe: {clf.spec.recipe}" in line


def test_many_classes_show_the_most_probable_first_and_fold_the_rest(browser, tmp_path_factory, tiny_model_dir):
    """Past ten classes the page lists the ten most probable, highest first, and folds the rest
    under '+N more classes'; each class offers one example text."""
    words = ["apple", "river", "engine", "violin", "tennis", "winter", "doctor", "planet", "garden",
             "coffee", "market", "castle"]
    tmp = tmp_path_factory.mktemp("many")
    data = tmp / "many.tsv"
    data.write_text("".join(f"c{i:02d}\tnote {j} about the {w} and more about the {w}\n"
                            for i, w in enumerate(words) for j in range(10)))
    train(tiny_train_config(tiny_model_dir, data, tmp / "run", epochs=1))
    clf = Classifier.load(tmp / "run")
    text = "a note about the planet and the river"
    with serving(clf) as url, browsing(browser, url) as pg:
        assert pg.eval_on_selector_all(".example", "bs => bs.map(b => b.dataset.kind)") == list(clf.labels)
        classify_in_page(pg, text)
        want = clf.predict([text])[0]
        label, rows = read_result(pg)
        by_probability = sorted(clf.labels, key=lambda n: -want.probabilities[n])
        assert label == want.label and [r[0] for r in rows] == by_probability
        for name, p, _ in rows:
            assert p == pytest.approx(want.probabilities[name], rel=1e-5, abs=1e-6)
        visible = ".prob", "rs => rs.filter(r => r.checkVisibility()).map(r => r.dataset.label)"
        assert pg.eval_on_selector_all(*visible) == by_probability[:10]
        assert pg.inner_text("#more-classes summary") == "+2 more classes"
        pg.click("#more-classes summary")
        assert pg.eval_on_selector_all(*visible) == by_probability
