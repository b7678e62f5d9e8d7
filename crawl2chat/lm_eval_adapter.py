"""EleutherAI lm-eval harness adapter: score crawl2chat checkpoints on any harness task.

    python -m crawl2chat.lm_eval_adapter --model crawl2chat --model_args path=runs/demo/pretrain/final \\
        --tasks arc_easy --include_path my_tasks/      # any lm_eval CLI flags

(`import crawl2chat.lm_eval_adapter` registers the model name `crawl2chat`
for `lm_eval.simple_evaluate` too.) Log-likelihoods come from the same
batched scorer as the core suite (`lm/evals/loglik.py`); generation from the
engine, greedy, without tools. The harness is optional: lm/ never imports it.
"""
from __future__ import annotations

import sys

from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from lm.checkpoint import load_model
from lm.engine import Engine
from lm.evals.loglik import score_requests


@register_model("crawl2chat")
class Crawl2ChatLM(LM):
    """model_args: path (checkpoint dir or models:/ URI), device (cpu|cuda|auto), batch_size."""

    def __init__(self, path: str, device: str = "cpu", batch_size: int | str = 32, max_gen_toks: int = 256, **_):
        super().__init__()
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model, self.tok, self.meta = load_model(path, device=device)
        self.model.eval()
        self.batch = int(batch_size) if str(batch_size).isdigit() else 32  # "auto" → our default
        self.max_gen_toks = int(max_gen_toks)

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        reqs = [(self.tok.encode(ctx, prepend_bos=True), self.tok.encode(cont)) for ctx, cont in
                (r.args for r in requests)]
        return [(s.logprob, s.greedy) for s in score_requests(self.model, reqs, batch_size=self.batch)]

    def loglikelihood_rolling(self, requests) -> list[float]:
        """Whole-document log-likelihood: windows of the context length, each after the text before it."""
        window = self.model.config.sequence_len - 1
        out = []
        for r in requests:
            ids = self.tok.encode(r.args[0], prepend_bos=True)
            reqs = [(ids[:s], ids[s:s + window]) for s in range(1, len(ids), window)]
            out.append(sum(s.logprob for s in score_requests(self.model, reqs, batch_size=self.batch)))
        return out

    def generate_until(self, requests) -> list[str]:
        eng = Engine(self.model, self.tok, tools=None)
        out = []
        for r in requests:
            ctx, kw = r.args
            until = kw.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            comp = eng.generate([self.tok.encode(ctx, prepend_bos=True)], int(kw.get("max_gen_toks", self.max_gen_toks)),
                                temperature=0.0, truncate="left")[0]
            text = comp.text
            cut = min((text.find(u) for u in until if u and u in text), default=-1)
            out.append(text[:cut] if cut >= 0 else text)
        return out


def main() -> int:
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
