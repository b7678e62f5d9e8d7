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


SCREENS = os.environ.get("CRAWL2CHAT_SCREENS")  # a directory: the tests leave screenshots of the page there


def shoot(page, name: str) -> None:
    if SCREENS:
        os.makedirs(SCREENS, exist_ok=True)
        page.screenshot(path=os.path.join(SCREENS, f"{name}.png"), full_page=True)


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
    reply = page.get_attribute(".msg.assistant", "data-raw")  # the reply's text as streamed
    assert reply and not reply.startswith("error:") and "<|" not in reply
    # the same greedy reply comes back from the API: the page showed the model's real output
    import httpx
    api = httpx.post(server + "/v1/chat/completions", timeout=60, json={
        "messages": [{"role": "user", "content": "What is 12+7?"}], "temperature": 0, "max_tokens": 40}).json()
    msg = api["choices"][0]["message"]
    assert msg["content"] == reply
    # The toy model answers through its calculator: the call and its result (`tool_run` deltas) are folded
    # under the reply (<details>, closed), and the visible answer carries no markup.
    tool = page.query_selector(".msg.assistant details.tool")
    assert tool is not None and tool.get_attribute("open") is None
    run = msg["tool_runs"][0]
    assert run["call"] in tool.inner_text() and not tool.query_selector(".result").is_visible()
    tool.query_selector("summary").click()
    assert tool.query_selector(".result").inner_text() == run["result"]
    assert page.evaluate("document.querySelector('.msg.assistant').firstChild.textContent") == reply
    assert "error" not in page.get_attribute(".msg.assistant", "class")
    # Streamed, not dumped at once: the page consumed the reply as several SSE
    # deltas (DOM updates alone can coalesce when a fast server's events arrive
    # in one network read).
    chunks = int(page.get_attribute(".msg.assistant", "data-chunks") or 0)
    assert chunks >= 2 and page.evaluate("window.__updates") >= 1
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
    runs = [{"call": "search: tides", "result": "[1] Tides https://example.org/tides <img src=x onerror=alert(1)>"}]
    page.evaluate("runs => { const d = document.createElement('div'); d.id = 'probe'; "
                  "document.body.appendChild(d); showReply(d, 'The moon causes tides [1].', runs); }", runs)
    link = page.query_selector("#probe details.tool .result a")
    assert link.get_attribute("href") == "https://example.org/tides"
    assert page.query_selector("#probe img") is None  # results are text nodes, never HTML
    assert page.evaluate("document.getElementById('probe').firstChild.textContent") == "The moon causes tides [1]."


def _say(page, text: str, n: int) -> None:
    """Send `text` and wait for the n-th reply to finish."""
    page.fill("#input", text)
    page.press("#input", "Enter")
    page.wait_for_function(f"document.querySelectorAll('.msg.assistant[data-done=\"true\"]').length == {n}",
                           timeout=120_000)


def test_a_conversation_longer_than_the_context(server, page):
    """Ten turns through the 128-token context: every one answered (no red error, no markup), and a line in
    the thread shows where the model's memory now begins; it moves down as the talk goes on."""
    page.goto(server + "/")
    page.wait_for_function("document.getElementById('model').textContent.length > 0")
    page.fill("#temperature", "0")
    positions = []
    for i in range(10):
        _say(page, f"What is {i}+{2 * i + 1}?", i + 1)
        # how many messages sit above the line (0 while the model sees everything)
        positions.append(page.evaluate("""() => { const line = document.getElementById('dropped');
            if (!line) return 0; let n = 0;
            for (let e = line.previousElementSibling; e; e = e.previousElementSibling) n++; return n; }"""))
    shoot(page, "web-chat-longer-than-context")
    assert not page.query_selector_all(".msg.error")
    replies = page.query_selector_all(".msg.assistant")
    assert len(replies) == 10 and all(r.get_attribute("data-raw").strip() for r in replies)
    assert "<|" not in page.inner_text("#log") and "|>" not in page.inner_text("#log")
    assert positions[0] == 0 and positions[-1] > 0 and positions == sorted(positions)
    assert positions[-1] % 2 == 0  # whole turns: the line never splits a question from its answer
    assert "no longer sees the messages above" in page.inner_text("#dropped")
    # what the page sends now is what the model sees: the history after the line
    assert page.evaluate("history.length") == 20 - positions[-1]


def test_the_page_asks_for_the_api_key_once(toy_model_dir, start_server, free_port, page):
    """A server with a key: the page asks for it before anything else, says so when it is refused,
    remembers it for the tab, and then chats."""
    from conf.serve import ServeConfig
    from lm.engine import load_engine

    engine, _ = load_engine(str(toy_model_dir))
    cfg = ServeConfig(port=free_port, max_prompt_tokens=100, max_tokens=64, default_max_tokens=40)
    with start_server(engine, cfg, api_key="GENERATED-page-key") as url:
        page.goto(url + "/")
        page.wait_for_selector("#keybar", state="visible")
        shoot(page, "web-chat-asks-for-key")
        page.fill("#key", "wrong")
        page.click("#usekey")
        page.fill("#input", "What is 1+2?")
        page.press("#input", "Enter")
        page.wait_for_selector(".msg.assistant.error")
        assert "invalid API key" in page.inner_text(".msg.assistant.error")
        assert "refused" in page.inner_text("#keymsg") and page.is_visible("#keybar")
        page.fill("#key", "GENERATED-page-key")
        page.click("#usekey")
        page.wait_for_function("document.getElementById('model').textContent.length > 0")
        page.reload()  # asked once: the tab remembers it
        page.wait_for_function("document.getElementById('model').textContent.length > 0")
        assert not page.is_visible("#keybar")
        page.fill("#temperature", "0")
        _say(page, "What is 1+2?", 1)
        assert not page.query_selector_all(".msg.error")
        shoot(page, "web-chat-with-key")
        page.evaluate("sessionStorage.clear()")
