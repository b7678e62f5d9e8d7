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
    ("word " * 150, "tokens; the limit is 100"),            # counted in tokens
    ("word " * 5000, "characters exceeds the limit of 100"),  # refused before tokenizing
])
def test_prompt_too_long_is_413(client, content, needle):
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": content}])
    assert e.value.status_code == 413 and needle in str(e.value)


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
