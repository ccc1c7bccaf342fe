"""Issue 16, integrity of the signals: each attack on what the analysis measures, replayed
against a real router process in front of stand-in upstreams, and refused."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pilotage.router.app import RouterApp
from pilotage.router.state import RouterState
from pilotage.wire.routes import RoutingError, parse_table
from tests.router.conftest import TOKEN, force, table
from tests.router.traffic import Client, get_json, put_routes
from tests.support.procs import free_port, pilotage, wait_until

pytestmark = pytest.mark.xdist_group("router-e2e")

ROW = [[1.0, 2.0, 3.0, 4.0]]


def feedback(client: Client, items: list[dict[str, Any]], **headers: str) -> Any:
    return client.request("POST", "/v1/feedback", {"feedback": items}, headers or None)


def test_request_ids_are_unguessable_and_forged_feedback_records_nothing(
    start_upstream, start_router
) -> None:
    stable, canary = start_upstream("1"), start_upstream("2")
    router = start_router(table(stable=(stable, 50), canary=(canary, 50)))
    client = Client(router.url)
    ids = [client.predict(ROW).request_id for _ in range(200)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in ids) and len(set(ids)) == 200
    # the attack of the issue: knowing one id, name its neighbours (prefix + counter)
    # and the ids that share any part of it; none of them exists
    last = ids[-1]
    guesses = {f"{last[:-1]}{d}" for d in "0123456789abcdef"} - {last}
    guesses |= {f"{last[:12]}-{n:x}" for n in range(1, 2000)}
    result = json.loads(
        feedback(client, [{"requestId": g, "label": 2} for g in sorted(guesses)]).body
    )
    assert result["recorded"] == 0 and result["unknown"] == len(guesses)
    for variant in router.stats()["variants"].values():
        assert variant["feedback"]["labelled"] == 0


def test_a_client_chosen_id_never_takes_over_another_clients_answer(
    start_upstream, start_router
) -> None:
    stable = start_upstream("1")
    router = start_router(table(stable=(stable, 100)))
    victim, attacker = Client(router.url), Client(router.url)
    # the stand-in predicts int(row[0]) % 3: the victim's row is class 1, the attacker's 2
    first = victim.predict([[1.0, 0.0, 0.0, 0.0]], {"x-pilotage-request-id": "order-7"})
    second = attacker.predict([[2.0, 0.0, 0.0, 0.0]], {"x-pilotage-request-id": "order-7"})
    assert first.status == second.status == 200
    result = json.loads(feedback(victim, [{"requestId": "order-7", "label": 1}]).body)
    assert result["recorded"] == 1
    # scored against the victim's own answer (class 1), not the attacker's (class 2)
    assert router.stats()["variants"]["stable"]["feedback"]["accuracy"] == 1.0


def test_feedback_can_require_a_token_and_is_always_on_the_admin_port(
    start_upstream, start_router, tmp_path: Path
) -> None:
    stable = start_upstream("1")
    token_file = tmp_path / "feedback-token"
    token_file.write_text("labeller-token\n")
    router = start_router(table(stable=(stable, 100)), "--feedback-token-file", str(token_file))
    client = Client(router.url)
    ids = [client.predict([[float(i % 3), 0, 0, 0]]).request_id for i in range(3)]
    truth = [{"requestId": rid, "label": i % 3} for i, rid in enumerate(ids)]
    anonymous = feedback(client, truth[:1])
    assert anonymous.status == 401 and "bearer token" in json.loads(anonymous.body)["error"]
    wrong = feedback(client, truth[:1], authorization="Bearer guess")
    assert wrong.status == 403
    assert router.stats()["feedback"]["received"] == 0  # refused before anything is read
    ok = feedback(client, truth[:2], authorization="Bearer labeller-token")
    assert ok.status == 200 and json.loads(ok.body)["recorded"] == 2
    admin = Client(router.admin_url)
    refused = admin.request("POST", "/admin/feedback", {"feedback": truth[2:]})
    assert refused.status == 401
    via_admin = admin.request(
        "POST", "/admin/feedback", {"feedback": truth[2:]}, {"authorization": f"Bearer {TOKEN}"}
    )
    assert via_admin.status == 200 and json.loads(via_admin.body)["recorded"] == 1
    assert router.stats()["variants"]["stable"]["feedback"]["labelled"] == 3


def test_forcing_a_variant_needs_the_token_and_forced_requests_are_not_judged(
    start_upstream, start_router
) -> None:
    stable, canary = start_upstream("1"), start_upstream("2")
    router = start_router(table(stable=(stable, 90), canary=(canary, 10)))
    client = Client(router.url)
    for _ in range(100):
        assert client.predict(ROW).status == 200
    before = router.stats()["variants"]["canary"]
    assert before["requests"] == 10

    public = client.predict(ROW, {"x-pilotage-variant": "canary"})
    assert public.status == 403 and "x-pilotage-variant-token" in json.loads(public.body)["error"]
    wrong = client.predict(
        ROW, {"x-pilotage-variant": "canary", "x-pilotage-variant-token": "guess"}
    )
    assert wrong.status == 403 and "not accepted" in json.loads(wrong.body)["error"]

    # the attack of the issue: slow forced requests onto the canary
    canary.control(delay=0.2)
    answers = [client.predict(ROW, force("canary")) for _ in range(6)]
    assert {(a.status, a.variant) for a in answers} == {(200, "canary")}
    after = router.stats()["variants"]["canary"]
    # nothing the analysis reads moved: requests, codes, latency, errors
    for key in ("requests", "codes", "latency", "errors"):
        assert after[key] == before[key], key
    assert after["forced"] == {"requests": 6, "codes": {"200": 6}}
    # nor are forced answers kept for feedback (a tester's labels would count as accuracy)
    result = json.loads(feedback(client, [{"requestId": answers[0].request_id, "label": 1}]).body)
    assert result["unknown"] == 1
    # the token travels no further than the router
    assert get_json(canary.url, "/control")["requests"] == before["requests"] + 6


def test_forcing_is_off_without_a_variant_token(start_upstream, tmp_path: Path) -> None:
    stable = start_upstream("1")
    config = tmp_path / "routes.json"
    config.write_text(json.dumps(table(stable=(stable, 100))))
    port = free_port()
    proc = subprocess.Popen(
        pilotage("route", "--config", str(config), "--port", str(port)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _up(url), 30, what="router up")
        answer = Client(url).predict(ROW, force("stable"))
        assert (
            answer.status == 403 and "forcing a variant is off" in json.loads(answer.body)["error"]
        )
    finally:
        proc.terminate()
        proc.wait(10)


def _up(url: str) -> bool:
    try:
        return Client(url, timeout=1).request("GET", "/pilotage/healthz").status == 200
    except OSError:
        return False


@pytest.mark.parametrize("version", ["1\r\nx-injected: yes", "1\n", "v 2", "", "x" * 129, "é"])
def test_header_bound_values_are_validated(version: str) -> None:
    doc = {
        "deployment": "iris",
        "mode": "canary",
        "variants": [{"name": "stable", "url": "http://a:1", "weight": 100, "version": version}],
    }
    with pytest.raises(RoutingError, match=r"variants\[0\]\.version"):
        parse_table(doc)


def test_a_crlf_version_is_refused_by_the_admin_api_and_the_table_stays(
    start_upstream, start_router
) -> None:
    stable = start_upstream("1")
    doc = table(stable=(stable, 100))
    router = start_router(doc)
    bad = {**doc, "variants": [{**doc["variants"][0], "version": "1\r\nx: y"}]}
    answer = put_routes(router.admin_url, TOKEN, bad)
    assert answer.status == 400 and "x-pilotage-model-version" in json.loads(answer.body)["error"]
    served = Client(router.url).predict(ROW)
    assert (served.status, served.version) == (200, "1")


async def test_an_answer_that_cannot_be_written_counts_as_an_error(start_upstream) -> None:
    stable = start_upstream("1")
    state = RouterState(parse_table(table(stable=(stable, 100))), "test")
    app = RouterApp(state)
    body = json.dumps({"instances": ROW}).encode()
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/models/iris:predict",
        "raw_path": b"/v1/models/iris:predict",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "server": ("127.0.0.1", 8080),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        raise RuntimeError("Invalid HTTP header value.")  # what uvicorn raises

    await app(scope, receive, send)
    stats = state.stats_json()["variants"]["stable"]
    assert stats["codes"] == {"502": 1} and stats["errors"] == 1
    assert len(state.recent) == 0  # nobody got it: nothing to score
    state.pools.close()


def test_a_body_cut_short_is_dropped_not_forwarded(start_upstream, start_router) -> None:
    stable = start_upstream("1")
    router = start_router(table(stable=(stable, 100)))
    prefix = json.dumps({"instances": ROW}).encode() + b"   "  # valid JSON on its own
    head = (
        b"POST /v1/models/iris:predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n" % (len(prefix) + 10_000)
    )
    port = int(router.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + prefix)
    wait_until(lambda: router.stats()["incompleteBodies"] == 1, 30, what="drop counted")
    assert get_json(stable.url, "/control")["requests"] == 0
    assert router.stats()["variants"]["stable"]["requests"] == 0


def _route(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(pilotage("route", *args), capture_output=True, text=True, timeout=60)


def test_admin_port_configurations_that_expose_the_proxy_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "routes.json"
    config.write_text(
        json.dumps(
            {
                "deployment": "iris",
                "mode": "canary",
                "variants": [
                    {"name": "stable", "url": "http://a:1", "weight": 100, "version": "1"}
                ],
            }
        )
    )
    token = tmp_path / "token"
    token.write_text("t\n")
    port = str(free_port())
    base = ["--config", str(config), "--port", port, "--admin-token-file", str(token)]
    zero = _route(*base, "--admin-port", "0")
    assert zero.returncode == 2
    assert zero.stderr.strip() == (
        "pilotage route: --admin-port 0: the admin API needs a fixed port (1-65535)"
    )
    same = _route(*base, "--admin-port", port, "--admin-host", "127.0.0.2")
    assert same.returncode == 2
    assert same.stderr.strip() == (
        f"pilotage route: --admin-port {port} is the public --port too: give the admin API "
        "its own port"
    )
    missing = _route("--config", str(config), "--port", port, "--variant-token-file", "/nope")
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert "/nope: cannot read the token file" in missing.stderr


def test_public_port_does_not_serve_internals(start_upstream, start_router) -> None:
    stable = start_upstream("1")
    router = start_router(table(stable=(stable, 100)))
    bad = {**table(stable=(stable, 100)), "mode": "linear"}
    Path(router.config).write_text(json.dumps(bad))
    wait_until(lambda: router.stats()["reloadErrors"] >= 1, 30, what="reload error")
    public = Client(router.url).request("GET", "/pilotage/stats")
    assert public.status == 404
    assert stable.url not in public.body.decode() and "linear" not in public.body.decode()
    metrics = Client(router.url).request("GET", "/metrics").body.decode()
    assert stable.url.split("//")[1] not in metrics
    assert router.stats()["lastReloadError"] is not None
