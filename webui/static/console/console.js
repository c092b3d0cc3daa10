/* The console's small script: live list, live session events (websocket, resumable), line comments,
   the terminal. No framework; everything degrades to plain links and forms. */
(function () {
  "use strict";
  function wsUrl(path) { return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path; }
  function el(tag, cls, text) { var e = document.createElement(tag); if (cls) e.className = cls; if (text != null) e.textContent = text; return e; }

  var Console = {};

  Console.pollList = function () {
    var body = document.querySelector("tbody[data-poll]");
    if (!body) return;
    setInterval(function () {
      if (document.hidden) return;
      fetch(body.dataset.poll, {credentials: "same-origin"}).then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null) body.innerHTML = html; }).catch(function () {});
    }, 3000);
  };

  Console.followSession = function (id) {
    var list = document.getElementById("events");
    var last = parseInt(list.dataset.last || "0", 10);
    var retry = 500, refreshTimer = null;
    function atBottom() { return list.scrollHeight - list.scrollTop - list.clientHeight < 40; }
    function refreshHead() {
      clearTimeout(refreshTimer);
      refreshTimer = setTimeout(function () {
        fetch("/sessions/" + id + "/state", {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (s) {
          var st = document.querySelector("#status-box [data-status]");
          st.className = "status status-" + s.status; st.textContent = s.status.replace("_", " ");
          document.getElementById("status-detail").textContent = s.detail || "";
          var d = document.getElementById("diffstat");
          d.querySelector(".add").textContent = "+" + s.added; d.querySelector(".del").textContent = "\u2212" + s.removed;
          var turns = document.getElementById("turns");
          if (turns) turns.innerHTML = s.turns_html;  // rendered by the server from its own template
        }).catch(function () {});
      }, 200);
    }
    function add(ev) {
      if (ev.id <= last) return;  // a repeat after a reconnect: already shown
      last = ev.id; list.dataset.last = String(last);
      var follow = atBottom();
      var li = el("li", "ev ev-" + ev.kind + (ev.stream ? " stream-" + ev.stream : ""));
      li.dataset.id = ev.id;
      li.appendChild(el("span", "at", ev.at)); li.appendChild(el("span", "kind", ev.kind.replace(/_/g, " ")));
      if (ev.html != null) { var body = el("div", "body"); body.innerHTML = ev.html; li.appendChild(body); }  // rendered and sanitized by the server
      else li.appendChild(el("pre", null, ev.text));
      list.appendChild(li);
      if (follow) list.scrollTop = list.scrollHeight;
      if (ev.kind === "turn_end") Console.notifyTurnEnd(id, ev);
      if (["status", "diff_stat", "turn_end", "pull_request", "user_message", "message_queued"].indexOf(ev.kind) >= 0) refreshHead();
    }
    function connect() {
      var ws = new WebSocket(wsUrl("/ws/sessions/" + id + "/events?after=" + last));
      ws.onopen = function () { retry = 500; document.body.dataset.live = "1"; };
      ws.onmessage = function (m) { var ev = JSON.parse(m.data); if (ev.kind !== "ping") add(ev); };
      ws.onclose = function (e) {
        document.body.dataset.live = "0";
        if (e.code === 4404) return;  // no longer visible to us
        setTimeout(connect, retry); retry = Math.min(retry * 2, 10000);
      };
    }
    list.scrollTop = list.scrollHeight;
    connect();
  };

  // browser notifications on turn end, when the user asked for them on the account page
  Console.askNotifyPermission = function (checkboxId) {
    var box = document.getElementById(checkboxId);
    if (!box || !("Notification" in window)) return;
    box.addEventListener("change", function () {
      if (box.checked && Notification.permission === "default") Notification.requestPermission();
    });
  };
  Console.notifyTurnEnd = function (id, ev) {
    if (document.body.dataset.notifyTurns !== "1" || !("Notification" in window)) return;
    if (Notification.permission !== "granted") return;
    var title = document.title.replace(/ · Appliance$/, "");
    new Notification("Turn ended: " + title, {body: id + (ev.text ? " — " + ev.text : ""), tag: id});
  };

  // a button that copies its data-command (e.g. "Open in CLI": appliance teleport <id>)
  Console.copyButton = function (buttonId, doneId) {
    var button = document.getElementById(buttonId), done = document.getElementById(doneId);
    if (!button) return;
    function said(text) { if (done) done.textContent = text; }
    function fallback(text) {  // no async clipboard (a page served over plain http to another host)
      var area = el("textarea"); area.value = text; document.body.appendChild(area); area.select();
      var ok = false; try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      area.remove(); said(ok ? "Copied" : "Copy this: " + text);
    }
    button.addEventListener("click", function () {
      var text = button.dataset.command;
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(function () { said("Copied"); }, function () { fallback(text); });
      } else fallback(text);
    });
  };

  // "Load earlier events": the server renders the page of events before the oldest one shown
  Console.loadEarlier = function () {
    var button = document.getElementById("load-earlier");
    if (!button) return;
    button.addEventListener("click", function () {
      button.disabled = true;
      fetch(button.dataset.url + "?before=" + button.dataset.before, {credentials: "same-origin"})
        .then(function (r) { return r.ok ? r.json() : null; }).then(function (page) {
          if (!page) { button.disabled = false; return; }
          var holder = button.parentNode;
          holder.insertAdjacentHTML("afterend", page.html);  // rendered by the server from its own template
          if (page.before) { button.dataset.before = String(page.before); button.disabled = false; }
          else holder.remove();
        }).catch(function () { button.disabled = false; });
    });
  };

  Console.diffComments = function () {
    var table = document.getElementById("patch"), tpl = document.getElementById("comment-form");
    if (!table || !tpl) return;
    table.addEventListener("click", function (e) {
      var row = e.target.closest("tr.commentable");
      if (!row || e.target.closest("form")) return;
      var open = table.querySelector("tr.editing");
      if (open) open.remove();
      var frag = tpl.content.cloneNode(true), form = frag.querySelector("form");
      form.elements.path.value = table.dataset.path;
      form.elements.line.value = row.dataset.line;
      form.elements.side.value = row.dataset.side;
      frag.querySelector("[data-cancel]").addEventListener("click", function () { table.querySelector("tr.editing").remove(); });
      row.after(frag);
      table.querySelector("tr.editing textarea").focus();
    });
  };

  Console.terminal = function (id) {
    var box = document.getElementById("terminal");
    var term = new Terminal({cursorBlink: true, fontSize: 13, convertEol: false});
    var fit = new FitAddon.FitAddon();
    term.loadAddon(fit); term.open(box); fit.fit();
    var ws = new WebSocket(wsUrl("/ws/sessions/" + id + "/terminal"));
    function resize() { fit.fit(); if (ws.readyState === 1) ws.send(JSON.stringify({r: [term.cols, term.rows]})); }
    ws.onopen = function () { resize(); term.focus(); document.body.dataset.terminal = "open"; };
    ws.onmessage = function (m) { term.write(m.data); };
    ws.onclose = function () { term.write("\r\n[disconnected]\r\n"); document.body.dataset.terminal = "closed"; };
    term.onData(function (d) { if (ws.readyState === 1) ws.send(JSON.stringify({d: d})); });
    window.addEventListener("resize", resize);
    window.consoleTerminal = term;
  };

  window.Console = Console;
})();
