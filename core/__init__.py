"""The bottom layer every other package may import: standard library only.

- `core.atomic`: the one atomic writer (temp name beside the target + `os.replace`).
- `core.run_root`: a stage's output contract — the manifest, written last, and the
  one checkpoint resolver every stage, the CLI and the server use.

It imports no project code and no third-party package, so `lm/` can use it on a
bare GPU box (torch + numpy only) and `conf/` stays a leaf beside it.
"""
