"""`crawl2chat quality-train`: train the fastText quality classifier of the curate stage.

Two ways to get labels:
- positive and negative text (`--positive`/`--negative`, each a Parquet file or folder,
  JSONL, WARC or .txt, repeatable): reference-quality text against raw web text, DCLM-style
  (a WARC gives its pages' main text as a positive, their boilerplate — the lines extraction
  leaves out — as a negative);
- the FineWeb-Edu path: `--label-endpoint URL --label-model NAME --unlabelled FILE` asks any
  OpenAI-compatible chat endpoint (a hosted model, or `crawl2chat serve`) to score each
  document with FineWeb-Edu's published annotation prompt; scores ≥ `--edu-threshold`
  become positives, the rest negatives; the labels are saved beside the model.
Prints and writes (`<model>.json`) the held-out precision, recall and ROC AUC.
Use the model with `curate.quality_model: PATH` (conf/curate.py); docs/CURATION.md.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("quality-train", help="train the fastText quality classifier (curate stage)",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--positive", action="append", default=[], help="reference-quality text (repeatable)")
    p.add_argument("--negative", action="append", default=[], help="low-quality / raw web text (repeatable)")
    p.add_argument("--unlabelled", action="append", default=[],
                   help="documents to label with --label-endpoint (FineWeb-Edu path; repeatable)")
    p.add_argument("--label-endpoint", default=None, help="OpenAI-compatible API root, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--label-model", default="default", help="model name sent to the endpoint")
    p.add_argument("--label-count", type=int, default=500, help="documents to label (the first N)")
    p.add_argument("--edu-threshold", type=int, default=3, help="FineWeb-Edu score that makes a positive")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the endpoint's key")
    p.add_argument("--out", required=True, help="model file to write (.ftz); figures go to <out>.json")
    p.add_argument("--held-out", type=float, default=0.2, help="share of documents held out for the figures")
    p.add_argument("--window-words", type=int, default=50, help="words per training example")
    p.add_argument("--epoch", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    from core.atomic import write_json
    from core.errors import Refused
    from tasks.curation.quality_classifier import label_with_endpoint, read_texts, train_classifier

    if args.label_endpoint:
        if not args.unlabelled:
            raise Refused("--label-endpoint needs --unlabelled FILE (the documents to label)")
        docs = [t for path in args.unlabelled for t in read_texts(path, "main")][: args.label_count]
        labels = label_with_endpoint(docs, args.label_endpoint, args.label_model,
                                     api_key=os.environ.get(args.api_key_env))
        scored = [(d, lab["score"]) for d, lab in zip(docs, labels) if lab["score"] is not None]
        positives = [d for d, s in scored if s >= args.edu_threshold]
        negatives = [d for d, s in scored if s < args.edu_threshold]
        write_json(f"{args.out}.labels.json", {
            "endpoint": args.label_endpoint, "model": args.label_model, "documents": len(docs),
            "unparsed": len(docs) - len(scored), "threshold": args.edu_threshold,
            "scores": [lab["score"] for lab in labels]})
        print(f"labelled {len(docs)} documents: {len(positives)} positive (score ≥ {args.edu_threshold}), "
              f"{len(negatives)} negative, {len(docs) - len(scored)} without a score")
        if not positives or not negatives:
            raise Refused(f"the endpoint's labels give {len(positives)} positives and {len(negatives)} negatives; "
                          "both are needed: label more documents or change --edu-threshold")
    else:
        if not args.positive or not args.negative:
            raise Refused("give --positive and --negative text, or --label-endpoint with --unlabelled")
        # a WARC given as positive gives its pages' main text; as negative, their boilerplate
        positives = [t for path in args.positive for t in read_texts(path, "main")]
        negatives = [t for path in args.negative for t in read_texts(path, "boilerplate")]
    figures = train_classifier(positives, negatives, args.out, held_out=args.held_out,
                               window_words=args.window_words, seed=args.seed, epoch=args.epoch)
    figures["sources"] = {"positive": args.positive or ["(endpoint labels)"],
                          "negative": args.negative or ["(endpoint labels)"]}
    write_json(f"{args.out}.json", figures)
    print(f"wrote {figures['model']} ({figures['bytes']:,} bytes): held-out precision {figures['precision']:.3f}, "
          f"recall {figures['recall']:.3f}, AUC {figures['auc']:.3f} on {figures['held_out_windows']} windows")
    print(json.dumps({k: figures[k] for k in ("precision", "recall", "auc")}))
    return 0
