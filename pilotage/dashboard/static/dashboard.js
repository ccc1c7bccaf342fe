// Pilotage dashboard: refresh the live part of the page every second and run the action
// buttons (with confirmation). Everything is rendered by the server; no library, no network
// beyond this dashboard.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var flash = document.getElementById("flash");
  var updated = document.getElementById("updated");
  var PERIOD_MS = 1000;
  var busy = false;

  function say(text, kind) {
    flash.textContent = text;
    flash.className = kind ? "flash-" + kind : "";
  }

  function refresh() {
    var url = live && live.getAttribute("data-fragment");
    if (!url || busy || document.hidden) return;
    busy = true;
    fetch(url, { headers: { Accept: "text/html" }, cache: "no-store" })
      .then(function (response) {
        return response.text().then(function (text) {
          if (text !== live.innerHTML) live.innerHTML = text;
          live.setAttribute("data-status", String(response.status));
          updated.textContent = "updated " + new Date().toLocaleTimeString();
          updated.className = "updated";
        });
      })
      .catch(function () {
        updated.textContent = "cannot reach the dashboard — retrying";
        updated.className = "updated stale";
      })
      .then(function () { busy = false; });
  }

  function act(button) {
    var action = button.getAttribute("data-action");
    var name = button.getAttribute("data-name");
    var namespace = button.getAttribute("data-namespace");
    var full = button.getAttribute("data-full") === "true";
    var what = action + (full ? " --full" : "") + " " + button.getAttribute("data-kind") + "/" + name;
    if (!window.confirm("Run `pilotage " + what + "` in namespace " + namespace + "?")) return;
    button.disabled = true;
    say("running " + what + "…", "info");
    fetch("/api/actions", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Pilotage-Action": "1" },
      body: JSON.stringify({ action: action, namespace: namespace, name: name, full: full })
    })
      .then(function (response) {
        return response.json().then(function (doc) {
          if (response.ok) {
            say(doc.message + (doc.warning ? " — warning: " + doc.warning : ""), doc.warning ? "warn" : "ok");
          } else {
            say(action + " refused: " + doc.error, "error");
          }
        });
      })
      .catch(function (err) { say(action + " failed: " + err, "error"); })
      .then(function () { button.disabled = false; refresh(); });
  }

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (target instanceof HTMLElement && target.matches("button.action")) act(target);
  });
  setInterval(refresh, PERIOD_MS);
})();
