"""The one-page web chat, driven in headless Chromium: type a message, watch the reply stream in.

Needs Debian's `chromium` package (apt-get install -y chromium) and the Python
`playwright` package; playwright's own browser downloads are not used.
"""
import os
import shutil

import pytest

CHROMIUM = os.environ.get("CRAWL2CHAT_CHROMIUM", "/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not (os.path.exists(CHROMIUM) or shutil.which("chromium")),
                                reason="headless browser missing: apt-get install -y chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def page():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        pg = browser.new_page()
        yield pg
        browser.close()


def test_chat_page_streams_a_reply(server, page):
    page.goto(server + "/")
    page.wait_for_function("document.getElementById('model').textContent.length > 0")
    assert "crawl2chat-toy" in page.inner_text("#model")
    # Count DOM updates of the reply: a streamed reply changes many times, a buffered one once.
    page.evaluate("""() => {
        window.__updates = 0;
        new MutationObserver(() => window.__updates++).observe(
            document.getElementById('log'), {subtree: true, childList: true, characterData: true});
    }""")
    assert page.input_value("#max_tokens") == "40"  # the server's default_max_tokens
    page.fill("#temperature", "0")
    page.fill("#input", "What is 12+7?")
    page.click("#send")
    page.wait_for_selector(".msg.user")
    assert page.inner_text(".msg.user") == "What is 12+7?"
    page.wait_for_selector(".msg.assistant[data-done='true']", timeout=60_000)
    reply = page.get_attribute(".msg.assistant", "data-raw")  # the reply as streamed, tool markup included
    assert reply and not reply.startswith("error:")
    # The toy model answers through its calculator: the call and its result are folded under the reply
    # (<details>, closed), and the visible answer carries no markup.
    tool = page.query_selector(".msg.assistant details.tool")
    assert tool is not None and tool.get_attribute("open") is None
    call = reply.split("<|tool_start|>")[1].split("<|tool_end|>")[0]
    result = reply.split("<|output_start|>")[1].split("<|output_end|>")[0]
    assert call.strip() in tool.inner_text() and not tool.query_selector(".result").is_visible()
    tool.query_selector("summary").click()
    assert tool.query_selector(".result").inner_text() == result
    assert "<|" not in page.evaluate("document.querySelector('.msg.assistant').firstChild.textContent")
    assert "error" not in page.get_attribute(".msg.assistant", "class")
    # Streamed, not dumped at once: the page consumed the reply as several SSE
    # deltas (DOM updates alone can coalesce when a fast server's events arrive
    # in one network read).
    chunks = int(page.get_attribute(".msg.assistant", "data-chunks") or 0)
    assert chunks >= 2 and page.evaluate("window.__updates") >= 1
    # the same greedy reply comes back from the API: the page showed the model's real output
    import httpx
    r = httpx.post(server + "/v1/chat/completions", timeout=60, json={
        "messages": [{"role": "user", "content": "What is 12+7?"}], "temperature": 0, "max_tokens": 40})
    assert r.json()["choices"][0]["message"]["content"].strip() == reply.strip()
    # second turn keeps the conversation
    page.fill("#input", "And 40+2?")
    page.press("#input", "Enter")
    page.wait_for_function("document.querySelectorAll('.msg.assistant[data-done=\"true\"]').length == 2",
                           timeout=60_000)
    assert len(page.query_selector_all(".msg.user")) == 2


def test_error_is_shown(server, page):
    page.goto(server + "/")
    page.fill("#max_tokens", "100000")
    page.fill("#input", "hello")
    page.click("#send")
    page.wait_for_selector(".msg.assistant.error", timeout=30_000)
    assert "max_tokens must be between" in page.inner_text(".msg.assistant.error")


def test_search_hits_show_as_links_in_the_folded_call(server, page):
    # The page's own renderer on a GENERATED search reply (no model needed); a hostile result stays text.
    page.goto(server + "/")
    raw = ("<|tool_start|>search: tides<|tool_end|><|output_start|>[1] Tides https://example.org/tides "
           "<img src=x onerror=alert(1)><|output_end|>The moon causes tides [1].")
    page.evaluate("raw => { const d = document.createElement('div'); d.id = 'probe'; "
                  "document.body.appendChild(d); showReply(d, raw); }", raw)
    link = page.query_selector("#probe details.tool .result a")
    assert link.get_attribute("href") == "https://example.org/tides"
    assert page.query_selector("#probe img") is None  # results are text nodes, never HTML
    assert page.evaluate("document.getElementById('probe').firstChild.textContent") == "The moon causes tides [1]."
