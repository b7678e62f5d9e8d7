"""Compression table: our BPE at several vocab sizes vs GPT-2 on held-out real text.

Input: Parquet GENERATED here from the real text in data/text (300 C4 docs,
30 Wikipedia articles). Split by hash of the doc id (val 10%).
Usage: python benchmarks/tokenizer_compression.py [VOCAB ...] [--with-shakespeare]
"""
import json, sys, tempfile, time
from pathlib import Path
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import pyarrow as pa, pyarrow.parquet as pq
from tasks.tokenize import train_tokenizer, run_compression, compression_markdown, held_out_texts

D = REPO / "data" / "text"; out = Path(tempfile.mkdtemp(prefix="c2c-compression-"))
c4 = [json.loads(l)["text"] for l in (D / "llamafactory_c4_demo.jsonl").read_text().splitlines()]
wiki = [l for l in (D / "llamafactory_wiki_demo.txt").read_text().splitlines() if l.strip()]
pq.write_table(pa.table({"id": [f"c4-{i}" for i in range(len(c4))], "text": c4}), out / "generated_c4.parquet")
pq.write_table(pa.table({"id": [f"wiki-{i}" for i in range(len(wiki))], "text": wiki}), out / "generated_wiki.parquet")
paths = [out / "generated_c4.parquet", out / "generated_wiki.parquet"]
shk = (D / "tinyshakespeare.txt").read_text(); chunks = [shk[i:i+4000] for i in range(0, len(shk), 4000)] + [(D / "cs336_corpus.en").read_text()]
pq.write_table(pa.table({"id": [f"extra-{i}" for i in range(len(chunks))], "text": chunks}), out / "generated_extra.parquet")
train_paths = paths + ([out / "generated_extra.parquet"] if "--with-shakespeare" in sys.argv else [])
held = held_out_texts(paths, 10**6, 0.1)
print(f"held-out docs: {len(held)}, bytes {sum(len(t.encode()) for t in held)}")
rows = []
for v in [int(a) for a in sys.argv[1:] if a.isdigit()] or [2048, 4096, 8192, 32768]:
    t = time.time()
    info = train_tokenizer(train_paths, v, out / f"v{v}", max_chars=10**9, val_fraction=0.1)
    r = run_compression(info["path"], paths, 10**6, 0.1)
    r[0]["tokenizer"] = f"crawl2chat-{v}"
    r[0]["train_s"] = round(time.time() - t, 1)
    rows.append(r[0]); gpt2 = r[1]
rows.append(gpt2)
print(compression_markdown(rows))
