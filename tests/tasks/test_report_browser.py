"""The report card as a reader sees it: its markdown rendered (Python-Markdown, tables) and opened in
headless Chromium. Stage outputs are GENERATED; the samples carry the markup a tiny model writes."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tasks.report import build_report, md_escape, rising_note

CHROMIUM = os.environ.get("CRAWL2CHAT_CHROMIUM", "/usr/bin/chromium")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
SCREENS = os.environ.get("CRAWL2CHAT_SCREENSHOTS")
NASTY = "<|tool_start|>search: *AI* crawl_and | afraid [x](y) `z` # no"


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))


def card_html(md_path: Path) -> Path:
    """report.md → report.html beside it (what a markdown viewer shows)."""
    markdown = pytest.importorskip("markdown")
    body = markdown.markdown(md_path.read_text(), extensions=["tables"])
    out = md_path.with_suffix(".html")
    out.write_text(f"<!doctype html><meta charset='utf-8'><title>report card</title>"
                   f"<style>body{{font-family:sans-serif;max-width:1100px;margin:1em auto;font-size:14px}}"
                   f"table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px}}"
                   f"img{{max-width:100%}}</style><body>{body}</body>")
    return out


def test_samples_are_shown_literally_and_a_rising_loss_is_explained():
    assert md_escape("a*b*\n<c>") == "a\\*b\\* ⏎ &lt;c&gt;"
    assert "ln 2" in rising_note("dpo", "train/loss", [0.35, 0.5, 0.89])
    assert rising_note("sft", "train/loss", [3.0, 2.0, 1.0]) is None  # falls: nothing to explain
    assert rising_note("rl", "rl/reward_mean", [0.1, 0.2, 0.3]) is None  # a reward should rise
    assert "overfit" in rising_note("sft", "val/loss", [1.0, 1.1, 1.3])


@pytest.mark.skipif(not (os.path.exists(CHROMIUM) or shutil.which("chromium")),
                    reason="headless browser missing: apt-get install -y chromium")
def test_report_card_reads_in_a_browser(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    root = tmp_path / "run"
    _write(root / "curate" / "stats.json", {"inputs": 2, "shards": 2, "documents": 30, "stages": [
        {"stage": "read", "in": 100, "kept": 80, "dropped": {"non_html": 20}}]})
    _write(root / "tokenize" / "tokens" / "meta.json", {"vocab_size": 4096, "n_tokens": 1200,
                                                        "splits": {"val": {"n_tokens": 1000, "n_bytes": 3500}}})
    _write(root / "pretrain" / "manifest.json", {"val_bpb": 2.79})
    _write(root / "reward" / "manifest.json", {"val_accuracy": 0.8, "n_val": 100, "n_train": 400})
    _write(root / "evaluate" / "samples.jsonl", "\n".join(json.dumps(s) for s in (
        {"model": "rl", "prompt": "What is 5+3?", "reply": NASTY},
        {"model": "sft", "prompt": "Hello! Who are you?", "reply": "I am crawl2chat.\nAsk me *anything*."})))
    evaluation = {"config": {"compliance_n": 10, "arithmetic_n": 32, "arithmetic_difficulty": 0},
                  "models": {"sft": {"chat_compliance": 1.0, "arith_acc_no_tool": 0.5, "arith_acc_tool": 0.0},
                             "pretrain": {"chat_compliance": 0.0}}}
    md = build_report(root, tmp_path / "report", evaluation, with_mlflow=False)
    html = card_html(md)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            page.goto(html.as_uri())
            text = page.inner_text("body")
            # the lines lead with what was measured; the statistics are notes at the end
            assert "pretrain — Measured: how well the base model predicts held-out text" in text
            assert "32 sums of 0–3: fraction right without a tool" in text  # the eval table says what 0.5 is
            assert text.index("statistics behind the figures") > text.index("### samples".lstrip("# "))
            # samples show what the model wrote, literally: no tag swallowed, no emphasis, no link
            assert f"rl, asked “What is 5+3?”: “{NASTY}”" in text  # nothing added (no stray backslash)
            samples = "xpath=//h3[text()='samples']/following-sibling::ul[1]"
            assert page.locator(samples + "/li").count() == 2
            assert page.locator(samples + "//em").count() == 0 and page.locator(samples + "//a").count() == 0
            assert "I am crawl2chat. ⏎ Ask me *anything*." in text
            broken = page.evaluate("[...document.images].filter(i => !i.complete || i.naturalWidth === 0)"
                                   ".map(i => i.src)")
            assert page.locator("img").count() >= 2 and broken == []
            if SCREENS:
                Path(SCREENS).mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(Path(SCREENS) / "report-card-generated.png"), full_page=True)
        finally:
            browser.close()
