"""Generation through an OpenAI-compatible /chat/completions endpoint (vllm serve, TGI, hosted APIs)."""

import email.utils
import os
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime

import httpx
from pydantic import Field

from aya_assets.generation.base import (
    Completion,
    GenerationBackend,
    Progress,
    SamplingSettings,
    check_shape,
    finish_reason,
)


class EndpointError(RuntimeError):
    """The endpoint refused a request, or kept failing after every retry."""


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The server's `Retry-After` wait, given either as seconds or as an HTTP date; None without a usable one."""
    value = response.headers.get("retry-after", "").strip()
    if value.replace(".", "", 1).isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except ValueError:
        return None  # absent or malformed: our own backoff applies
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def completions_from_response(payload: dict, n: int, seconds: float) -> list[Completion]:
    """Map one chat-completion response to `n` completions, in choice order."""
    choices = sorted(payload["choices"], key=lambda choice: choice.get("index", 0))
    if len(choices) != n:
        raise EndpointError(f"asked for n={n} choices, got {len(choices)}: the server may not support n > 1")
    total = (payload.get("usage") or {}).get("completion_tokens") or 0  # 0 when the server reports no usage
    even, extra = divmod(total, n)
    completions = []
    for i, choice in enumerate(choices):
        own = (choice.get("usage") or {}).get("completion_tokens")
        tokens = own if own is not None else even + (i < extra)
        text = (choice["message"].get("content") or "").strip()
        completions.append(Completion(text, tokens, finish_reason(choice.get("finish_reason")), seconds / n))
    return completions


class EndpointBackend(GenerationBackend):
    """POSTs each prompt to `{base_url}/chat/completions`, a few at a time, retrying transient failures."""

    base_url: str = Field(description="Up to and including the API version, e.g. http://localhost:8000/v1.")
    api_key_env: str | None = Field(default=None, description="Environment variable holding a Bearer token.")
    timeout_s: float = 120
    max_retries: int = Field(default=4, ge=0, description="Retries on connection errors, timeouts, 429 and 5xx.")
    backoff_s: float = Field(default=1.0, ge=0, description="First retry wait; doubles with each retry.")
    model_names: dict[str, str] = Field(
        default={}, description="Pipeline model name/path -> served model name (default: the same string)."
    )
    max_concurrency: int = Field(default=8, ge=1, description="Requests in flight at once.")

    def _headers(self) -> dict[str, str]:
        if self.api_key_env is None:
            return {}
        key = os.environ.get(self.api_key_env)
        if not key:
            raise EndpointError(f"api_key_env is {self.api_key_env!r}, but that environment variable is not set")
        return {"Authorization": f"Bearer {key}"}

    def _post(self, client: httpx.Client, body: dict) -> dict:
        """POST with exponential backoff on transient failures; other 4xx fail at once."""
        url = f"{self.base_url.rstrip('/')}/chat/completions"
        attempt = 0
        while True:
            wait = self.backoff_s * 2**attempt
            try:
                response = client.post(url, json=body)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as error:
                if attempt == self.max_retries:
                    raise EndpointError(f"{url} failed after {attempt + 1} attempts: {error!r}") from error
            else:
                if not response.is_error:
                    return response.json()
                transient = response.status_code == 429 or response.status_code >= 500
                if not transient or attempt == self.max_retries:
                    tries = f" after {attempt + 1} attempts" if transient else ""
                    raise EndpointError(
                        f"{url} answered {response.status_code}{tries}: {response.text.strip()[:500]}"
                    )
                asked = retry_after_seconds(response)
                wait = wait if asked is None else asked
            time.sleep(wait)
            attempt += 1

    def _complete(self, client: httpx.Client, model: str, prompt: str, sampling: SamplingSettings) -> list[Completion]:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "n": sampling.n,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_new_tokens,
            "seed": sampling.seed,
        }
        started = time.perf_counter()
        payload = self._post(client, body)
        return completions_from_response(payload, sampling.n, time.perf_counter() - started)

    def generate(
        self,
        model: str,
        prompts: list[str],
        sampling: SamplingSettings,
        progress: Progress | None = None,
    ) -> list[list[Completion]]:
        """For each user prompt (plain text; the server applies the chat template), `sampling.n` completions."""
        if not prompts:
            return []
        served = self.model_names.get(model, model)
        with (
            httpx.Client(headers=self._headers(), timeout=self.timeout_s) as client,
            ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(prompts))) as pool,
        ):
            futures = [pool.submit(self._complete, client, served, p, sampling) for p in prompts]
            try:
                for done, future in enumerate(as_completed(futures), start=1):
                    future.result()  # raises the first failure now rather than after every prompt ran
                    if progress is not None:
                        progress(done, len(prompts))
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
            return check_shape([f.result() for f in futures], prompts, sampling.n)
