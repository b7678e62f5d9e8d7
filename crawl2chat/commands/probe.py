"""`crawl2chat probe`: what does a model know? GENERATED answer/refusal SFT data (the `probe` flow)."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "probe", help="probe a model on TriviaQA; write known-answer and refusal SFT conversations",
        description="Ask MODEL TriviaQA questions (the probe part; the held-out part is never used) several "
                    "times each, grade the replies, and write SFT conversations: a correct answer where the "
                    "model was right at least once, an honest refusal where it never was. `sft` mixes them in "
                    "with sft.refusal_data=<out> and sft.refusal_ratio.")
    p.add_argument("--model", required=True, help="checkpoint directory or MLflow URI (models:/crawl2chat-base@latest)")
    p.add_argument("--out", required=True, help="output directory of this stage (e.g. RUN/probe)")
    p.add_argument("--preset", default="tiny", help="config preset (conf/presets/<name>.yaml), default tiny")
    p.add_argument("--n-questions", type=int, default=None, help="questions to probe")
    p.add_argument("--samples", type=int, default=None, help="replies sampled per question (k)")
    p.add_argument("--prompt", default=None, choices=["auto", "chat", "fewshot"],
                   help="prompt style (auto: few-shot for a base model, a chat turn otherwise)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda")
    p.add_argument("--mlflow-root", default=None, help="sqlite MLflow store dir when MLFLOW_TRACKING_URI is unset")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flows.probe import probe
    from flows.runtime import ensure_prefect_api

    ensure_prefect_api()
    m = probe(args.model, args.out, preset=args.preset, mlflow_root=args.mlflow_root,
              overrides={"n_questions": args.n_questions, "samples": args.samples, "prompt": args.prompt,
                         "device": args.device})
    r = m["sample_rates"]
    print(f"probe: {m['n_questions']} questions × {m['k']} samples ({m['style']} prompts): right {r['right']:.3f}, "
          f"wrong {r['wrong']:.3f}, abstained {r['abstain']:.3f}")
    print(f"SFT data: {m['n_answers']} known answers, {m['n_refusals']} refusals → {m['conversations']}")
    return 0
