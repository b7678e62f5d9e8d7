"""crawl2chat: Common Crawl WARC → curated text → tokenizer → GPT → chat model."""
__version__ = "0.1.0"
