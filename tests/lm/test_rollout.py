"""GRPO rollouts: all k samples of a batch of prompts in one batched engine call (left-padded, KV cache).

Greedy decoding makes the batched call comparable with one call per prompt:
left padding, per-row positions, cache-row copies for the k samples and the
attention masks must all be right for the tokens to agree one for one.
"""

from lm.chat import ChatRenderer
from lm.engine import Engine
from lm.posttrain.rl import Problem, rollout
from tests.support.posttrain_base import load_base


def test_batched_greedy_rollout_equals_one_prompt_at_a_time():
    model, tok, _ = load_base()
    model.eval()
    problems = [Problem([{"role": "user", "content": q}]) for q in
                ["What is 2+2?", "Tell me, in a few words, what the weather was like on the long road north?", "Hi"]]
    prompts, comps = rollout(model, tok, problems, k=3, max_new_tokens=12, temperature=0, seed=0)
    lengths = {len(p) for p in prompts}
    assert len(lengths) == 3  # really different lengths, so rows are left-padded
    assert [(c.prompt_index, c.sample_index) for c in comps] == [(i, j) for i in range(3) for j in range(3)]
    r = ChatRenderer(tok)
    eng = Engine(model, tok)
    for i, p in enumerate(problems):
        ids = r.render_for_completion(p.conversation)
        assert ids == prompts[i]
        alone = eng.generate([ids], 12, temperature=0, seed=0)[0]
        for c in comps[3 * i:3 * i + 3]:
            assert c.tokens == alone.tokens and c.forced_mask == alone.forced_mask
            assert c.finish_reason == alone.finish_reason
