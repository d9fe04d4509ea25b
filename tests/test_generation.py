"""Generation backends: a real tiny Llama through transformers, a real local HTTP endpoint, vLLM's edges."""

import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import dagster as dg
import httpx
import pydantic
import pytest
import torch

from aya_assets.generation import (
    Completion,
    EndpointBackend,
    EndpointError,
    GenerationBackend,
    SamplingSettings,
    TransformersBackend,
    VLLMBackend,
)
from aya_assets.generation import hf
from aya_assets.generation.vllm_backend import completions_from_vllm

# Different lengths, so a batch needs padding.
PROMPTS = ["Hi", "Il fait beau aujourd'hui, nous allons au marché. Et toi?", "今日は天気が良い", "Сегодня"]
GREEDY = SamplingSettings(n=1, max_new_tokens=8, temperature=0)


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs the tiny models on one torch thread (conftest.one_torch_thread)."""


def texts(results: list[list[Completion]]) -> list[list[str]]:
    return [[c.text for c in completions] for completions in results]


def test_sampling_settings_are_frozen_and_strict():
    settings = SamplingSettings(n=2)
    with pytest.raises(pydantic.ValidationError):
        settings.n = 3
    with pytest.raises(pydantic.ValidationError):
        SamplingSettings(max_tokens=10)
    with pytest.raises(pydantic.ValidationError):
        SamplingSettings(n=0)


@pytest.mark.parametrize(
    "backend", [TransformersBackend(), VLLMBackend(), EndpointBackend(base_url="http://127.0.0.1:9/v1")]
)
def test_no_prompts_give_no_completions(backend):
    assert backend.generate("unused", [], SamplingSettings()) == []


@pytest.mark.slow
def test_transformers_shape_is_prompts_by_n(chat_checkpoints):
    sampling = SamplingSettings(n=3, max_new_tokens=6, seed=1)
    progress = []
    results = TransformersBackend(batch_size=3).generate(
        chat_checkpoints["random"], PROMPTS, sampling, progress=lambda *p: progress.append(p)
    )
    assert [len(r) for r in results] == [3] * len(PROMPTS)
    assert progress == [(3, 4), (4, 4)]
    for completion in (c for r in results for c in r):
        assert 1 <= completion.tokens <= sampling.max_new_tokens
        assert completion.finish_reason in {"stop", "length"}
        assert completion.text == completion.text.strip()
        assert completion.seconds > 0


@pytest.mark.slow
def test_transformers_sampling_is_seeded(chat_checkpoints):
    backend = TransformersBackend(batch_size=2)
    sampling = SamplingSettings(n=2, max_new_tokens=6, temperature=1.0, seed=7)
    first = texts(backend.generate(chat_checkpoints["random"], PROMPTS, sampling))
    backend.generate(chat_checkpoints["random"], PROMPTS[:1], sampling.model_copy(update={"seed": 99}))
    callers_rng = torch.get_rng_state()
    again = texts(backend.generate(chat_checkpoints["random"], PROMPTS, sampling))
    assert torch.equal(torch.get_rng_state(), callers_rng)  # seeding did not reset the caller's generator
    other_seed = texts(backend.generate(chat_checkpoints["random"], PROMPTS, sampling.model_copy(update={"seed": 123})))
    # A batch's samples depend on its own prompts only, not on the batches before it. Batches are formed by length,
    # longest first: the two longest prompts replaced by others of their lengths leave the later batch as it was.
    longest = sorted(range(len(PROMPTS)), key=lambda i: -len(PROMPTS[i]))[:2]
    replaced = [("x" * len(p) if i in longest else p) for i, p in enumerate(PROMPTS)]
    other_first_batch = texts(backend.generate(chat_checkpoints["random"], replaced, sampling))
    assert first == again
    assert first != other_seed
    rest = [i for i in range(len(PROMPTS)) if i not in longest]
    assert [other_first_batch[i] for i in rest] == [first[i] for i in rest]
    assert [other_first_batch[i] for i in longest] != [first[i] for i in longest]


@pytest.mark.slow
def test_transformers_batched_greedy_equals_one_by_one(chat_checkpoints):
    """Left padding done right: padding a prompt in a batch does not change its greedy answer."""
    batched = TransformersBackend(batch_size=len(PROMPTS)).generate(chat_checkpoints["random"], PROMPTS, GREEDY)
    single = TransformersBackend(batch_size=1).generate(chat_checkpoints["random"], PROMPTS, GREEDY)
    assert [[(c.text, c.tokens, c.finish_reason) for c in r] for r in batched] == [
        [(c.text, c.tokens, c.finish_reason) for c in r] for r in single
    ]
    assert any(c.text for r in batched for c in r)


@pytest.mark.slow
def test_transformers_batches_by_length_and_answers_in_the_prompts_order(chat_checkpoints):
    """Batches group prompts of similar length; each answer still comes back at its prompt's position."""
    prompts = ["Hi", "Wie spät ist es jetzt in Berlin, bitte?", "Ok?", "Erzähl mir bitte eine kurze Geschichte über Katzen."]
    backend = TransformersBackend(batch_size=2)
    forward = backend.generate(chat_checkpoints["random"], prompts, GREEDY)
    backward = backend.generate(chat_checkpoints["random"], prompts[::-1], GREEDY)[::-1]
    assert [[c.text for c in r] for r in forward] == [[c.text for c in r] for r in backward]
    alone = [backend.generate(chat_checkpoints["random"], [p], GREEDY)[0] for p in prompts]
    assert [[c.text for c in r] for r in forward] == [[c.text for c in r] for r in alone]


@pytest.mark.slow
def test_transformers_finish_reason_length_when_eos_is_unreachable(chat_checkpoints):
    results = TransformersBackend().generate(chat_checkpoints["never_eos"], PROMPTS, GREEDY)
    assert {(c.finish_reason, c.tokens) for r in results for c in r} == {("length", GREEDY.max_new_tokens)}


@pytest.mark.slow
def test_transformers_finish_reason_stop_counts_the_eos(chat_checkpoints):
    results = TransformersBackend().generate(chat_checkpoints["only_eos"], PROMPTS, GREEDY)
    # The answer is the EOS alone: one token, and neither the prompt nor the special token leaks into the text.
    assert {(c.finish_reason, c.tokens, c.text) for r in results for c in r} == {("stop", 1, "")}


@pytest.mark.slow
def test_transformers_reuses_the_loaded_model(chat_checkpoints, monkeypatch):
    loads = []
    real_load = hf.load

    def counting_load(model, device, dtype):
        loads.append(model)
        return real_load(model, device, dtype)

    monkeypatch.setattr(hf, "load", counting_load)
    backend = TransformersBackend()
    sampling = SamplingSettings(max_new_tokens=1)
    for name in ["random", "random", "only_eos", "random"]:
        backend.generate(chat_checkpoints[name], PROMPTS[:1], sampling)
    assert loads == [chat_checkpoints["random"], chat_checkpoints["only_eos"], chat_checkpoints["random"]]


@pytest.mark.slow
def test_transformers_backend_as_a_dagster_resource(chat_checkpoints):
    @dg.asset
    def answers(generator: GenerationBackend) -> dg.MaterializeResult:
        results = generator.generate(chat_checkpoints["random"], PROMPTS[:2], SamplingSettings(n=2, max_new_tokens=2))
        return dg.MaterializeResult(metadata={"completions": sum(len(r) for r in results)})

    result = dg.materialize([answers], resources={"generator": TransformersBackend(batch_size=1)})
    assert result.success
    [materialization] = result.asset_materializations_for_node("answers")
    assert materialization.metadata["completions"].value == 4


def test_vllm_backend_without_vllm_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail even where it is installed
    with pytest.raises(RuntimeError, match=r"pip install 'aya_assets\[vllm\]'"):
        VLLMBackend().generate("some/model", ["Hi"], SamplingSettings())


def vllm_sample(text: str, token_ids: list[int], finish_reason: str | None) -> SimpleNamespace:
    """Shaped like vllm's CompletionOutput, as far as the mapping reads it."""
    return SimpleNamespace(text=text, token_ids=token_ids, finish_reason=finish_reason)


def test_vllm_mapping_mocked_vllm_outputs():
    outputs = [
        SimpleNamespace(outputs=[vllm_sample(" Bonjour ! ", [5, 6, 7], "stop"), vllm_sample("Salut", [8, 9], "length")]),
        SimpleNamespace(outputs=[vllm_sample("\nHola\n", [1], "stop"), vllm_sample("", [], None)]),
    ]
    assert completions_from_vllm(outputs, seconds=2.0) == [
        [Completion("Bonjour !", 3, "stop", 0.5), Completion("Salut", 2, "length", 0.5)],
        [Completion("Hola", 1, "stop", 0.5), Completion("", 0, "stop", 0.5)],
    ]


class MockEndpoint:
    """A real HTTP server on 127.0.0.1 that answers like an OpenAI-compatible chat endpoint."""

    def __init__(self):
        self.requests: list[tuple[dict, dict]] = []  # (headers, body) as received
        self.scripted: list[tuple[int, dict, str]] = []  # (status, headers, body) to send before normal answers
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.requests.append((dict(self.headers), body))
                if self.path != "/v1/chat/completions":
                    return self.reply(404, {}, "no such route")
                if endpoint.scripted:
                    return self.reply(*endpoint.scripted.pop(0))
                prompt = body["messages"][-1]["content"]
                choices = [
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": f"  {prompt} -> answer {i}\n"},
                        "finish_reason": "length" if i == 0 else "stop",
                    }
                    for i in reversed(range(body["n"]))  # out of order on purpose: `index` decides
                ]
                usage = {"prompt_tokens": 5, "completion_tokens": 3 * body["n"] + 1}
                self.reply(200, {}, json.dumps({"id": "x", "object": "chat.completion", "choices": choices, "usage": usage}))

            def reply(self, status, headers, text):
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(text.encode())

            def log_message(self, *args):
                pass  # keep pytest output clean

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"


@pytest.fixture
def mock_endpoint():
    endpoint = MockEndpoint()
    thread = threading.Thread(target=endpoint.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield endpoint
    endpoint.server.shutdown()
    endpoint.server.server_close()


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """Backoff waits, recorded instead of slept."""
    waits = []
    monkeypatch.setattr("aya_assets.generation.endpoint.time.sleep", waits.append)
    return waits


def test_endpoint_success_mock_endpoint(mock_endpoint):
    backend = EndpointBackend(base_url=mock_endpoint.url, model_names={"data/models/teacher_a": "teacher-a"})
    sampling = SamplingSettings(n=3, max_new_tokens=20, temperature=0.5, top_p=0.9, seed=3)
    progress = []
    results = backend.generate(
        "data/models/teacher_a", ["Bonjour", "Hola"], sampling, progress=lambda *p: progress.append(p)
    )
    assert texts(results) == [[f"{p} -> answer {i}" for i in range(3)] for p in ["Bonjour", "Hola"]]
    # 10 completion tokens over 3 choices, split so that they still add up.
    assert [[c.tokens for c in r] for r in results] == [[4, 3, 3], [4, 3, 3]]
    assert [c.finish_reason for c in results[0]] == ["length", "stop", "stop"]
    assert progress[-1] == (2, 2)
    bodies = sorted((body for _, body in mock_endpoint.requests), key=lambda b: b["messages"][0]["content"])
    assert bodies[0] == {
        "model": "teacher-a",
        "messages": [{"role": "user", "content": "Bonjour"}],
        "n": 3,
        "temperature": 0.5,
        "top_p": 0.9,
        "max_tokens": 20,
        "seed": 3,
    }


def test_endpoint_retries_503_then_succeeds_mock_endpoint(mock_endpoint, sleeps):
    mock_endpoint.scripted = [(503, {}, "overloaded"), (429, {"Retry-After": "7"}, "slow down")]
    backend = EndpointBackend(base_url=mock_endpoint.url, backoff_s=0.5)
    results = backend.generate("m", ["Hi"], SamplingSettings())
    assert texts(results) == [["Hi -> answer 0"]]
    assert len(mock_endpoint.requests) == 3
    assert sleeps == [0.5, 7.0]  # exponential backoff, then the server's Retry-After


def test_endpoint_gives_up_after_max_retries_mock_endpoint(mock_endpoint, sleeps):
    mock_endpoint.scripted = [(500, {}, "boom")] * 3
    backend = EndpointBackend(base_url=mock_endpoint.url, max_retries=2, backoff_s=1.0)
    with pytest.raises(EndpointError, match="500 after 3 attempts: boom"):
        backend.generate("m", ["Hi"], SamplingSettings())
    assert sleeps == [1.0, 2.0]


def test_endpoint_fails_fast_on_400_mock_endpoint(mock_endpoint, sleeps):
    mock_endpoint.scripted = [(400, {}, json.dumps({"error": "temperature must be <= 2"}))]
    backend = EndpointBackend(base_url=mock_endpoint.url)
    with pytest.raises(EndpointError, match=r"answered 400: .*temperature must be <= 2"):
        backend.generate("m", ["Hi"], SamplingSettings())
    assert len(mock_endpoint.requests) == 1
    assert sleeps == []


def test_endpoint_sends_bearer_key_mock_endpoint(mock_endpoint, monkeypatch):
    monkeypatch.setenv("AYA_TEST_ENDPOINT_KEY", "sk-test-123")
    backend = EndpointBackend(base_url=mock_endpoint.url, api_key_env="AYA_TEST_ENDPOINT_KEY")
    backend.generate("m", ["Hi"], SamplingSettings())
    [(headers, _)] = mock_endpoint.requests
    assert headers["Authorization"] == "Bearer sk-test-123"


def test_endpoint_retries_connection_errors_then_raises(sleeps):
    with socket.socket() as closed:  # a port that was just free: nothing listens there, so connecting is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    backend = EndpointBackend(base_url=f"http://127.0.0.1:{port}/v1", max_retries=1, backoff_s=0.25)
    with pytest.raises(EndpointError, match="failed after 2 attempts: ConnectError") as raised:
        backend.generate("m", ["Hi"], SamplingSettings())
    assert isinstance(raised.value.__cause__, httpx.ConnectError)
    assert sleeps == [0.25]
