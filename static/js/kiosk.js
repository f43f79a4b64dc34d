/* The kiosk screen: live over a WebSocket, no polling; reconnects by itself with backoff.
   When the server's feed cannot be reached it falls back to the bank worker's own local feed
   (the bank decides taps itself, online or not), and keeps trying the server meanwhile. */
(function () {
  "use strict";
  var root = document.getElementById("kiosk");
  if (!root) return;
  var bank = root.dataset.bank;
  var localFeed = root.dataset.localFeed || "";
  var local = null; // the bank's own feed, used while the server is unreachable
  var resetMs = (parseInt(root.dataset.resetSeconds, 10) || 8) * 1000;
  // A return stays on screen while the door is open, so there is time to report damage.
  var returnMs = 45000;
  var socket = null;
  var attempts = 0;
  var resetTimer = null;
  var current = null; // {purpose, slot} of the tap on screen

  function $(id) { return document.getElementById(id); }

  function show(name, fields, holdMs) {
    var screens = root.querySelectorAll("[data-screen]");
    for (var i = 0; i < screens.length; i++) screens[i].hidden = screens[i].id !== "screen-" + name;
    var screen = $("screen-" + name);
    Object.keys(fields || {}).forEach(function (key) {
      var el = screen.querySelector('[data-field="' + key + '"]');
      if (el) el.textContent = fields[key];
    });
    clearTimeout(resetTimer);
    if (name !== "idle") resetTimer = setTimeout(idle, holdMs || resetMs);
  }

  function idle() {
    current = null;
    $("damage-choices").hidden = true;
    $("damage-open").hidden = false;
    show("idle");
  }

  function onTap(msg) {
    if (!msg.granted) {
      show("denied", { message: msg.message || "Sorry, this badge cannot be used here. Please see your supervisor." });
      return;
    }
    current = { purpose: msg.purpose, slot: msg.slot };
    if (msg.purpose === "return") {
      $("damage-choices").hidden = true;
      $("damage-open").hidden = false;
      show("return", {
        slot: msg.slot, message: msg.message,
        "damage-status": "Something wrong with it? Tell us before you close the door."
      }, returnMs);
    } else {
      show("take", { slot: msg.slot, message: msg.message });
    }
  }

  function onCompleted(msg) {
    var texts = {
      "take.completed": "Door " + msg.slot + " closed. " + msg.asset + " is yours — have a good shift.",
      "take.cancelled": "Door " + msg.slot + " closed with the device still inside. Nothing was taken.",
      "return.completed": "Thank you — " + msg.asset + " is back and charging.",
      "return.cancelled": "Door " + msg.slot + " closed without the device. Please tap again to return it."
    };
    if (current && current.slot !== msg.slot) return; // another person's door
    show("done", { message: texts[msg.type] });
  }

  function handle(msg) {
    // The bank's local feed names completions with underscores.
    if (/^(take|return)_(completed|cancelled)$/.test(msg.type)) msg.type = msg.type.replace("_", ".");
    switch (msg.type) {
      case "hello": setOffline(!msg.online); break;
      case "tap": onTap(msg); break;
      case "take.completed": case "take.cancelled":
      case "return.completed": case "return.cancelled": onCompleted(msg); break;
      case "bank.status": setOffline(!msg.online); break;
      case "damage_reported":
        $("damage-choices").hidden = true;
        $("damage-open").hidden = true;
        show("return", { "damage-status": "Thank you — we will have it checked. Put it in door " + msg.slot + " and close the door." }, returnMs);
        break;
      case "error":
        if (current && current.purpose === "return") {
          show("return", { "damage-status": "That could not be recorded: " + msg.detail }, returnMs);
        }
        break;
    }
  }

  function setOffline(offline) { $("kiosk-offline").hidden = !offline; }

  function setConnection(state) {
    var el = $("kiosk-connection");
    var texts = { live: "Live", local: "Offline mode", wait: "Reconnecting…" };
    el.textContent = texts[state];
    el.className = "conn conn-" + (state === "live" ? "live" : "wait");
  }

  function onMessage(event) {
    try { handle(JSON.parse(event.data)); } catch (e) { /* a bad frame must not stop the screen */ }
  }

  function useLocalFeed() {
    if (!localFeed || local) return;
    try { local = new WebSocket(localFeed); } catch (e) { local = null; return; }
    local.onopen = function () { setConnection("local"); setOffline(true); };
    local.onmessage = function (event) {
      if (socket && socket.readyState === WebSocket.OPEN) return; // the server's feed has it
      onMessage(event);
    };
    local.onclose = function () { local = null; };
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var opened = false;
    socket = new WebSocket(scheme + location.host + "/ws/kiosk/" + encodeURIComponent(bank) + "/");
    socket.onopen = function () {
      opened = true;
      attempts = 0;
      setConnection("live");
      if (local) { local.close(); local = null; }
    };
    socket.onmessage = onMessage;
    socket.onclose = function (event) {
      if (event.code === 4403) { location.reload(); return; } // unpaired: the page says so
      // The server is out of reach: the bank still decides taps; show them from its feed.
      useLocalFeed();
      if (!local || local.readyState !== WebSocket.OPEN) setConnection("wait");
      var delay = Math.min(30000, 500 * Math.pow(2, attempts)) + Math.random() * 500;
      if (!opened) attempts += 1;
      setTimeout(connect, delay);
    };
  }

  $("damage-open").addEventListener("click", function () {
    $("damage-open").hidden = true;
    $("damage-choices").hidden = false;
    show("return", { "damage-status": "What is wrong with it?" }, returnMs);
  });
  $("damage-cancel").addEventListener("click", function () {
    $("damage-choices").hidden = true;
    $("damage-open").hidden = false;
    show("return", { "damage-status": "Put it in the door and close it." }, returnMs);
  });
  var choices = root.querySelectorAll("[data-problem]");
  for (var i = 0; i < choices.length; i++) {
    choices[i].addEventListener("click", function (event) {
      if (!current || !socket || socket.readyState !== WebSocket.OPEN) {
        if (current) show("return", { "damage-status": "Damage can be reported when the locker is back online. Please tell your supervisor." }, returnMs);
        return;
      }
      socket.send(JSON.stringify({ type: "report_damage", slot: current.slot, problem: event.currentTarget.dataset.problem }));
    });
  }

  function tick() {
    var now = new Date();
    $("kiosk-clock").textContent = now.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    $("kiosk-clock").setAttribute("datetime", now.toISOString());
  }
  tick();
  setInterval(tick, 15000);
  // Full screen on the first touch (browsers allow it only after a gesture).
  document.addEventListener("pointerdown", function () {
    if (!document.fullscreenElement && document.documentElement.requestFullscreen) {
      document.documentElement.requestFullscreen().catch(function () {});
    }
  }, { once: true });
  connect();
})();
