"""`crawl2chat serve`: a one-page web chat and an OpenAI-compatible API (see app.py)."""
