"""The OpenAI-compatible API, driven by the real `openai` client against a live local server."""

import httpx
import openai
import pytest

MODEL_ID = "crawl2chat-toy"  # as in tests/serve/conftest.py


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=60)


MSG = [{"role": "user", "content": "What is 12+7?"}]


def test_models(client):
    assert [m.id for m in client.models.list().data] == [MODEL_ID]


def test_completion_not_streamed(client):
    r = client.chat.completions.create(model=MODEL_ID, messages=MSG, temperature=0, max_tokens=40)
    assert r.object == "chat.completion" and r.model == MODEL_ID
    c = r.choices[0]
    assert c.message.role == "assistant" and c.message.content
    assert c.finish_reason in ("stop", "length")
    assert "<|assistant_end|>" not in c.message.content
    assert r.usage.completion_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    again = client.chat.completions.create(model=MODEL_ID, messages=MSG, temperature=0, max_tokens=40)
    assert again.choices[0].message.content == c.message.content  # greedy is deterministic


def test_n_samples_and_seed(client):
    r = client.chat.completions.create(model=MODEL_ID, messages=MSG, temperature=1.0, max_tokens=20, n=3, seed=5)
    assert [c.index for c in r.choices] == [0, 1, 2]


def test_streamed_equals_not_streamed(client):
    chunks = list(client.chat.completions.create(model=MODEL_ID, messages=MSG, temperature=0, max_tokens=40,
                                                 stream=True))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks)
    full = client.chat.completions.create(model=MODEL_ID, messages=MSG, temperature=0, max_tokens=40)
    assert len(chunks) > 3
    assert text == full.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == full.choices[0].finish_reason


@pytest.mark.parametrize("content,needle", [
    ("word " * 150, "is 305 tokens; the prompt limit is 100"),  # counted in tokens
    ("word " * 5000, "is over 100 tokens"),                     # refused before tokenizing
])
def test_newest_message_too_long_is_413(client, content, needle):
    """413 only when the newest message alone cannot fit: older turns never cause one (below)."""
    history = [{"role": "user", "content": "What is 1+1?"}, {"role": "assistant", "content": "2"}]
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model=MODEL_ID, messages=[*history, {"role": "user", "content": content}])
    assert e.value.status_code == 413 and needle in str(e.value) and "shorten the message" in str(e.value)


def _no_markup(text: str) -> bool:
    return "<|" not in text and "|>" not in text


def test_twelve_turns_with_the_full_history_never_fail(client):
    """A client that sends the whole history every time (as OpenAI clients do) past the 128-token context:
    every turn is answered, nothing is refused, no markup, and `context` says what was left out."""
    history, dropped = [], []
    for i in range(12):
        history.append({"role": "user", "content": f"What is {i}+{2 * i + 1}?"})
        r = client.chat.completions.create(model=MODEL_ID, messages=history, temperature=0, max_tokens=40)
        reply = r.choices[0].message.content
        assert reply.strip() and _no_markup(reply), (i, reply)
        ctx = r.model_extra["context"]
        assert ctx["tokens"] == 128 and ctx["prompt_tokens"] == r.usage.prompt_tokens <= 128 - 16
        dropped.append(ctx["dropped_messages"])
        history.append({"role": "assistant", "content": reply})
    assert dropped[0] == 0 and dropped[-1] > 0 and dropped == sorted(dropped)  # the oldest go first, for good
    assert dropped[-1] % 2 == 0  # whole turns: a user message and its reply leave together
    # streamed, the first chunk carries the same extension field
    chunks = list(client.chat.completions.create(model=MODEL_ID, messages=history[:-1], temperature=0,
                                                 max_tokens=40, stream=True))
    assert chunks[0].model_extra["context"]["dropped_messages"] == dropped[-1]
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks)
    assert text.strip() and _no_markup(text)


def test_tool_calls_come_as_tool_runs_not_markup(client):
    """The toy answers through its calculator: the call and its result are the extension field `tool_runs`
    (streamed: `tool_run` deltas), and the content is the answer text alone."""
    r = client.chat.completions.create(model=MODEL_ID, messages=MSG, temperature=0, max_tokens=40)
    msg = r.choices[0].message
    runs = msg.model_extra["tool_runs"]
    assert runs and runs[0]["call"] and runs[0]["result"] is not None and _no_markup(msg.content)
    chunks = list(client.chat.completions.create(model=MODEL_ID, messages=MSG, temperature=0, max_tokens=40,
                                                 stream=True))
    streamed = [ch.choices[0].delta.model_extra.get("tool_run") for ch in chunks]
    streamed = [t for t in streamed if t]
    assert streamed[0] == {"call": runs[0]["call"], "result": None} and streamed[1] == runs[0]


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_call_cut_by_max_tokens_is_dropped_and_said(client, stream):
    """max_tokens=3 ends the reply inside the toy's calculator call: no markup, no half call, a note instead."""
    r = client.chat.completions.create(model=MODEL_ID, messages=MSG, temperature=0, max_tokens=3, stream=stream)
    if stream:
        chunks = list(r)
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks)
        finish = chunks[-1].choices[0].finish_reason
    else:
        text, finish = r.choices[0].message.content, r.choices[0].finish_reason
        assert r.choices[0].message.model_extra["tool_runs"] == []
    assert finish == "length" and _no_markup(text)
    assert text == "[reply cut off by its token limit inside a tool call; the call was not run]"


@pytest.mark.parametrize("kwargs,needle", [
    ({"max_tokens": 10_000}, "max_tokens must be between 1 and 64"),
    ({"n": 50}, "n must be at most"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "role 'tool' is not supported"),
    ({"messages": []}, "messages must not be empty"),
    ({"temperature": 9}, "temperature"),
])
def test_bad_requests_are_400(client, kwargs, needle):
    args = {"model": MODEL_ID, "messages": MSG, **kwargs}
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(**args)
    assert e.value.status_code == 400 and needle in str(e.value)


def test_concurrency_limit_is_429(server, client):
    """max_concurrent=1: while one stream is open, a second request is refused."""
    body = {"messages": MSG, "stream": True, "max_tokens": 64, "temperature": 1.0}
    with httpx.Client(timeout=60) as h:
        with h.stream("POST", f"{server}/v1/chat/completions", json=body) as first:
            assert first.status_code == 200
            lines = first.iter_lines()
            assert next(lines).startswith("data:")  # the stream is open and holds the slot
            with pytest.raises(openai.RateLimitError) as e:
                client.chat.completions.create(model=MODEL_ID, messages=MSG, max_tokens=5)
            assert e.value.status_code == 429 and "busy" in str(e.value)
            rest = list(lines)
        assert rest[-1] == "data: [DONE]" or rest[-2:] == ["data: [DONE]", ""]
    # the slot is free again
    r = client.chat.completions.create(model=MODEL_ID, messages=MSG, max_tokens=5)
    assert r.choices[0].message.content is not None


def test_binds_loopback_by_default():
    from conf.serve import ServeConfig

    assert ServeConfig().host == "127.0.0.1"
