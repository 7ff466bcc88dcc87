"""The search page of `slide serve` in a real headless browser: Debian's chromium driven by
Playwright. Skipped cleanly where either is absent (`.ci/run` installs chromium when it can)."""

import shutil

import pytest

import slide
from textdata import make_texts, slide_server

playwright = pytest.importorskip("playwright.sync_api")
pytest.importorskip("uvicorn")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no chromium on this machine (Debian: apt-get install chromium)", allow_module_level=True)

# what a closed network needs: no background connections, no sandbox as root, a fresh profile
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    texts, labels = make_texts(600, seed=1)
    clf = slide.SlideClassifier(hidden_layer_sizes=(32,), epochs=8, batch_size=32, learning_rate=0.01, n_jobs=1,
                                random_state=0).fit(texts, labels)
    path = tmp_path_factory.mktemp("page") / "model.npz"
    clf.save(path)
    with slide_server(path) as (port, _):
        yield f"http://127.0.0.1:{port}", clf


def test_the_page_shows_predictions_as_you_type(served, tmp_path):
    url, clf = served
    with playwright.sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        except Exception as e:  # a chromium that cannot start here (no display libraries, ...)
            pytest.skip(f"chromium does not start: {e}")
        try:
            page = browser.new_page()
            page.goto(url + "/")
            page.fill("#q", "black leather running shoes")
            first = page.locator("#results li .label").first
            first.wait_for(timeout=20_000)
            labels = page.locator("#results li .label").all_inner_texts()
            assert labels[0] == "shoes"
            assert labels == [str(v) for v in clf.predict_topk(["black leather running shoes"], k=8)[0][0]]
            assert "ms" in page.locator("#status").inner_text()
            # typing on replaces the answer
            page.fill("#q", "vim text editor for programmers")
            page.wait_for_function("document.querySelector('#results li .label').textContent === 'editor'",
                                   timeout=20_000)
            page.screenshot(path=str(tmp_path / "page.png"))
            # an empty box clears the list; an over-long query shows the server's message
            page.fill("#q", "")
            page.wait_for_function("document.querySelectorAll('#results li').length === 0", timeout=20_000)
            page.fill("#q", "shoes " * 3000)
            page.wait_for_function("document.querySelector('#status').className === 'error'", timeout=20_000)
            assert "characters" in page.locator("#status").inner_text()
        finally:
            browser.close()
