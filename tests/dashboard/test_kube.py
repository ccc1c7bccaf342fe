"""`pilotage dashboard --kube` against the emulated API server through a kubeconfig with a
bearer token: it lists what the user may list, its buttons patch the same annotation
`pilotage promote --kube` does, and an RBAC refusal (403) is one clean message, never a
traceback or a 500."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kmock
import pytest

from tests.dashboard.browser import browser_page, require_chromium, screenshot_dir
from tests.operator.conftest import api_url
from tests.operator.emulator import Cluster
from tests.operator.harness import apply_crds, cluster_call, get, write_kubeconfig
from tests.operator.manifests import BASE, model_deployment
from tests.support.procs import Process, free_port, pilotage

pytestmark = pytest.mark.xdist_group("operator-kube-dashboard")


def _call(url: str, body: dict[str, Any] | None = None) -> tuple[int, str]:
    headers = {"Content-Type": "application/json", "X-Pilotage-Action": "1"}
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data, headers if body is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def call(url: str, body: dict[str, Any] | None = None) -> tuple[int, str]:
    return await asyncio.to_thread(_call, url, body)


def click_abort_in_chromium(url: str, tmp: Path) -> str:
    """Open the deployment's page, press Abort, confirm: the message the page shows."""
    with browser_page(tmp) as page:
        page.goto(f"{url}/r/ModelDeployment/default/iris")
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator('button.action[data-action="abort"]').click()
        page.locator("#flash.flash-error").wait_for()
        page.screenshot(path=str(screenshot_dir() / "07-kube-forbidden.png"), full_page=True)
        return str(page.locator("#flash").inner_text())


async def test_dashboard_kube_acts_with_the_users_own_permissions(tmp_path: Path) -> None:
    require_chromium()
    token = "dashboard-token-0123456789"
    async with Cluster(token=token) as cluster, kmock.Server(cluster, host="127.0.0.1"):
        await apply_crds(cluster)
        await cluster_call(cluster, "POST", f"{BASE}/modeldeployments", model_deployment())
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api_url(cluster), token)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": str(kubeconfig)}
        port = free_port()
        args = pilotage("dashboard", "--kube", "-n", "default", "--port", str(port))
        proc = Process(args, tmp_path / "dashboard.log", env)
        url = f"http://127.0.0.1:{port}"
        try:
            await asyncio.to_thread(proc.wait_http, f"{url}/healthz", 60)
            assert f"dashboard: {url}/" in proc.log()

            code, html = await call(f"{url}/")
            assert code == 200, html
            assert 'data-kind="ModelDeployment" data-name="iris"' in html
            code, html = await call(f"{url}/r/ModelDeployment/default/iris")
            assert code == 200, html
            assert 'data-action="promote"' in html

            # the button's request: the annotation `pilotage promote --kube --full` sets
            code, text = await call(
                f"{url}/api/actions",
                {"action": "promote", "namespace": "default", "name": "iris", "full": True},
            )
            assert code == 200, text
            annotations = get(cluster, "modeldeployments", "iris")["metadata"]["annotations"]
            assert annotations["pilotage.dev/promote"].startswith("full:")
            assert annotations["pilotage.dev/promote"] in json.loads(text)["message"]

            # a rollout in progress, as the operator would write it (it enables Abort)
            rollout = {"phase": "Paused", "candidate": {"version": "v2", "uri": "file:///m"}}
            await cluster_call(
                cluster, "PATCH", f"{BASE}/modeldeployments/iris/status", {"status": rollout}
            )
            # RBAC forbids the patch: a clean 403, nothing changed
            cluster.forbid = {("PATCH", "modeldeployments")}
            code, text = await call(
                f"{url}/api/actions", {"action": "abort", "namespace": "default", "name": "iris"}
            )
            assert code == 403, text
            error = json.loads(text)["error"]
            assert error.startswith("forbidden:") and "modeldeployments" in error, error
            annotations = get(cluster, "modeldeployments", "iris")["metadata"]["annotations"]
            assert "pilotage.dev/abort" not in annotations
            # the same refusal through the page's button, in chromium: one clean line
            shown = await asyncio.to_thread(click_abort_in_chromium, url, tmp_path)
            assert shown == f"abort refused: {error}", shown
            annotations = get(cluster, "modeldeployments", "iris")["metadata"]["annotations"]
            assert "pilotage.dev/abort" not in annotations

            # RBAC forbids listing: the page says so in one line
            cluster.forbid = {("GET", "modeldeployments")}
            code, html = await call(f"{url}/")
            assert code == 403
            assert "forbidden: the kubeconfig&#x27;s user may not list modeldeployments" in html
            assert "Traceback" not in html + proc.log()
            assert cluster.unauthorized == []
        finally:
            proc.stop()
