/* The live dashboard: register (WebSocket) → the server sends a full snapshot → apply events.
   Every (re)connect brings a fresh snapshot, so nothing changed while offline is missed. */
(function () {
  "use strict";
  var root = document.getElementById("dashboard");
  if (!root) return;
  var labels = JSON.parse(document.getElementById("dashboard-labels").textContent);
  var canAck = root.dataset.canAck === "1";
  var csrf = root.querySelector("[name=csrfmiddlewaretoken]").value;
  var attempts = 0;
  var reloading = false;

  function label(kind, value) {
    if (kind === "present") value = value === null || value === undefined ? "null" : String(!!value);
    return (labels[kind] && labels[kind][value]) || String(value);
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  function fmt(iso) {
    if (!iso) return "";
    var d = new Date(iso);
    return d.toLocaleDateString([], { weekday: "short" }) + " " + d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function formatTimes(scope) {
    var times = (scope || root).querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      if (times[i].getAttribute("datetime")) times[i].textContent = fmt(times[i].getAttribute("datetime"));
    }
  }

  // --- Banks and slots ---

  function bankNode(code) { return root.querySelector('.bank[data-bank="' + CSS.escape(code) + '"]'); }

  function applyBank(code, online) {
    var node = bankNode(code);
    if (!node) return;
    node.classList.toggle("is-offline", !online);
    var pill = node.querySelector('[data-field="online"]');
    pill.textContent = online ? "Online" : "Offline";
    pill.className = "pill " + (online ? "pill-ok" : "pill-bad");
  }

  function applySlot(s) {
    var bank = bankNode(s.bank);
    var tile = bank && bank.querySelector('.slot[data-slot="' + s.slot + '"]');
    if (!tile) return false;
    tile.className = "slot door-" + s.door + " charge-" + s.charge + (s.out_of_service ? " is-oos" : "");
    ["door", "lock", "charge", "present"].forEach(function (kind) {
      tile.querySelector('[data-field="' + kind + '"]').textContent = label(kind, s[kind]);
    });
    tile.querySelector('[data-field="asset"]').textContent = s.asset || "—";
    var note = tile.querySelector('[data-field="out_of_service_reason"]');
    note.hidden = !s.out_of_service;
    note.textContent = "Out of service" + (s.out_of_service_reason ? ": " + s.out_of_service_reason : "");
    var out = tile.querySelector('[data-service="out"]');
    var back = tile.querySelector('[data-service="in"]');
    if (out) out.hidden = !!s.out_of_service;
    if (back) back.hidden = !s.out_of_service;
    return true;
  }

  // --- Checkouts ---

  function checkoutRow(c) {
    var status = c.overdue ? el("span", { "class": "pill pill-bad", text: "Overdue" }) : document.createTextNode("Out");
    return el("tr", { "data-checkout": c.id, "data-due": c.due_at || "", "class": c.overdue ? "is-overdue" : "" }, [
      el("td", {}, [document.createTextNode(c.employee + " "), el("span", { "class": "muted", text: c.employee_number })]),
      el("td", {}, [document.createTextNode(c.asset + " "), el("span", { "class": "muted", text: c.asset_type })]),
      el("td", { text: c.bank + " door " + c.slot }),
      el("td", {}, [el("time", { datetime: c.taken_at || "", text: fmt(c.taken_at) })]),
      el("td", {}, [el("time", { datetime: c.due_at || "", text: fmt(c.due_at) })]),
      el("td", { "data-field": "status" }, [status])
    ]);
  }

  function countRows(tableId, countId, emptyId) {
    var n = document.querySelectorAll("#" + tableId + " tbody tr").length;
    document.getElementById(countId).textContent = n;
    document.getElementById(emptyId).hidden = n > 0;
  }

  function sortCheckouts() {
    var body = document.querySelector("#checkouts tbody");
    var rows = Array.prototype.slice.call(body.children);
    rows.sort(function (a, b) { return (a.dataset.due || "~").localeCompare(b.dataset.due || "~"); });
    rows.forEach(function (row) { body.appendChild(row); });
  }

  function upsertCheckout(c) {
    var body = document.querySelector("#checkouts tbody");
    var old = body.querySelector('tr[data-checkout="' + c.id + '"]');
    if (c.status !== "active") { if (old) old.remove(); }
    else if (old) body.replaceChild(checkoutRow(c), old);
    else body.appendChild(checkoutRow(c));
    sortCheckouts();
    countRows("checkouts", "checkout-count", "no-checkouts");
  }

  function markOverdue() {
    var now = Date.now();
    var rows = document.querySelectorAll("#checkouts tbody tr[data-due]");
    for (var i = 0; i < rows.length; i++) {
      var due = rows[i].dataset.due;
      if (due && Date.parse(due) < now && !rows[i].classList.contains("is-overdue")) {
        rows[i].classList.add("is-overdue");
        var cell = rows[i].querySelector('[data-field="status"]');
        cell.textContent = "";
        cell.appendChild(el("span", { "class": "pill pill-bad", text: "Overdue" }));
      }
    }
  }

  // --- Alerts ---

  function alertRow(a) {
    var where = a.bank ? a.bank + (a.slot ? " door " + a.slot : "") : "";
    var action = null;
    if (canAck && a.state === "open") {
      action = el("form", { method: "post", action: root.dataset.ackUrl.replace("/0/", "/" + a.id + "/"), "data-async": "" }, [
        el("input", { type: "hidden", name: "csrfmiddlewaretoken", value: csrf }),
        el("button", { type: "submit", "class": "small", text: "Acknowledge" })
      ]);
    }
    return el("tr", { "data-alert": a.id, "class": "sev-" + a.severity }, [
      el("td", {}, [el("span", { "class": "pill sev-" + a.severity, text: label("severity", a.severity) })]),
      el("td", { text: a.title }),
      el("td", { text: where }),
      el("td", {}, [el("time", { datetime: a.opened_at, text: fmt(a.opened_at) })]),
      el("td", { text: label("state", a.state) }),
      el("td", {}, [action])
    ]);
  }

  function upsertAlert(a) {
    var body = document.querySelector("#alerts tbody");
    var old = body.querySelector('tr[data-alert="' + a.id + '"]');
    if (a.state === "resolved") { if (old) old.remove(); }
    else if (old) body.replaceChild(alertRow(a), old);
    else body.insertBefore(alertRow(a), body.firstChild);
    countRows("alerts", "alert-count", "no-alerts");
  }

  // --- Snapshot ---

  function applySnapshot(state) {
    for (var i = 0; i < state.banks.length; i++) {
      var bank = state.banks[i];
      if (!bankNode(bank.code)) { reload(); return; } // a bank added since the page loaded
      applyBank(bank.code, bank.online);
      for (var j = 0; j < bank.slots.length; j++) if (!applySlot(bank.slots[j])) { reload(); return; }
    }
    var checkouts = document.querySelector("#checkouts tbody");
    checkouts.textContent = "";
    state.checkouts.forEach(function (c) { checkouts.appendChild(checkoutRow(c)); });
    countRows("checkouts", "checkout-count", "no-checkouts");
    var alerts = document.querySelector("#alerts tbody");
    alerts.textContent = "";
    state.alerts.forEach(function (a) { alerts.appendChild(alertRow(a)); });
    countRows("alerts", "alert-count", "no-alerts");
  }

  function reload() { if (!reloading) { reloading = true; location.reload(); } }

  function handle(msg) {
    switch (msg.type) {
      case "snapshot": applySnapshot(msg); break;
      case "slot": applySlot(msg); break;
      case "bank": applyBank(msg.bank, msg.online); break;
      case "checkout": upsertCheckout(msg); break;
      case "alert": upsertAlert(msg); break;
    }
    root.dataset.lastEvent = msg.type;
  }

  // --- Connection ---

  function setConnection(live, paused) {
    var node = document.getElementById("live-status");
    // Paused: the live fan-out (Redis) is away. Banks keep deciding and recording on their
    // own; the page catches up with a fresh snapshot when it is back.
    node.textContent = live ? "Live" : paused ? "Live updates paused — banks keep working" : "Reconnecting…";
    node.className = "conn " + (live ? "conn-live" : "conn-wait");
    root.dataset.live = live ? "1" : "";
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + "/ws/dashboard/");
    socket.onopen = function () { attempts = 0; setConnection(true); };
    socket.onmessage = function (event) {
      try { handle(JSON.parse(event.data)); } catch (e) { if (window.console) console.error(e); }
    };
    socket.onclose = function (event) {
      setConnection(false, event.code === 4503);
      if (event.code === 4403) { reload(); return; } // signed out or no longer allowed: the page says why
      var delay = Math.min(30000, 500 * Math.pow(2, attempts)) + Math.random() * 500;
      attempts += 1;
      setTimeout(connect, delay);
    };
  }

  // --- Forms: post in the background; the live feed shows the result ---

  root.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.hasAttribute("data-async")) return;
    event.preventDefault();
    var message = document.getElementById("dash-message");
    fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json().catch(function () { return { error: { message: "The server refused (" + response.status + ")." } }; });
      })
      .then(function (body) {
        message.classList.toggle("is-error", !!body.error);
        message.textContent = body.error ? body.error.message : body.message;
        if (!body.error) {
          form.reset();
          var details = form.closest("details");
          if (details) details.open = false;
        }
      })
      .catch(function () {
        message.classList.add("is-error");
        message.textContent = "Could not reach the server. Try again.";
      });
  });

  formatTimes();
  setInterval(markOverdue, 30000);
  connect();
})();
