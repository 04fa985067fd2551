"""The API client's time-out grows with what it sends, and a change it stopped
waiting for is not reported as a daemon that is not there."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from gateway.control.client import BODY_BYTES_PER_S, TIMEOUT_S, ApiClient, ApiUnreachable


def _client(handler: httpx.MockTransport) -> ApiClient:
    api = ApiClient(Path("/nonexistent"))
    api._http = httpx.Client(transport=handler, base_url="http://nvgw")
    return api


def test_a_request_s_read_time_out_grows_with_its_body() -> None:
    seen: list[tuple[float, bytes, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        timeout = request.extensions["timeout"]["read"]
        seen.append((timeout, request.read(), request.headers.get("content-type", "")))
        return httpx.Response(200, json={"ok": True})

    records = [{"vsid": 5001, "ca": f"10.0.{n // 250}.{n % 250}"} for n in range(20_000)]
    with _client(httpx.MockTransport(answer)) as api:
        api.request("GET", "/v1/policy")
        api.request("POST", "/v1/lookup-records", json=records)
        chunks = iter([b"x" * 1000] * 2000)  # a progress bar's stream of a body it knows
        api.request("PUT", "/v1/policy", content=chunks, size=2_000_000)
    (small, _, _), (large, body, kind), (streamed, sent, _) = seen
    assert small == TIMEOUT_S
    assert json.loads(body) == records and kind == "application/json"
    assert large == pytest.approx(TIMEOUT_S + len(body) / BODY_BYTES_PER_S)
    assert large > TIMEOUT_S + 5  # 20,000 records are over half a megabyte
    assert len(sent) == 2_000_000 and streamed == TIMEOUT_S + 2_000_000 / BODY_BYTES_PER_S


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_no_answer_in_time_says_a_change_may_still_commit(method: str) -> None:
    def late(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with _client(httpx.MockTransport(late)) as api, pytest.raises(ApiUnreachable) as caught:
        api.request(method, "/v1/lookup-records", json={"vsid": 5001})
    message = str(caught.value)
    assert f"within {TIMEOUT_S:.0f} s" in message
    assert ("may still be committed" in message) is (method != "GET")
    assert "is `nvgw run` running" not in message
