// laojun's web view: keeps an incident's timeline and a run's steps live
// through Server-Sent Events. Values arrive as JSON and go into the page
// as text (never as HTML). The browser reconnects by itself and sends
// Last-Event-ID, so the server resumes where it left off.
"use strict";

(function () {
  function text(tag, value, cls) {
    var el = document.createElement(tag);
    el.textContent = value;
    if (cls) el.className = cls;
    return el;
  }

  var incident = document.getElementById("incident");
  if (incident) {
    var list = document.getElementById("timeline");
    var after = incident.getAttribute("data-last-event") || "0";
    var source = new EventSource("/ui/incidents/" + encodeURIComponent(incident.getAttribute("data-id")) + "/events?after=" + encodeURIComponent(after));
    source.addEventListener("timeline", function (message) {
      var e = JSON.parse(message.data);
      if (list.querySelector('li[data-seq="' + e.seq + '"]')) return;
      var li = document.createElement("li");
      li.setAttribute("data-seq", String(e.seq));
      li.className = "kind-" + e.kind;
      li.appendChild(text("time", e.at));
      li.appendChild(document.createTextNode(" "));
      li.appendChild(text("span", e.text, "text"));
      list.appendChild(li);
    });
  }

  var run = document.getElementById("run");
  if (run) {
    var runSource = new EventSource("/ui/runs/" + encodeURIComponent(run.getAttribute("data-id")) + "/events");
    runSource.addEventListener("run", function (message) {
      var r = JSON.parse(message.data);
      document.getElementById("run-status").textContent = r.status;
      document.getElementById("run-reason").textContent = r.reason || "";
      var body = document.querySelector("#steps tbody");
      r.steps.forEach(function (s) {
        var row = body.querySelector('tr[data-step="' + CSS.escape(s.id) + '"]');
        if (!row) {
          row = document.createElement("tr");
          row.setAttribute("data-step", s.id);
          ["", "", "status", "attempts", "took", "", "error"].forEach(function (cls) { row.appendChild(text("td", "", cls)); });
          row.children[0].textContent = s.id;
          row.children[1].textContent = s.action;
          row.children[5].appendChild(text("pre", "", "output"));
          body.appendChild(row);
        }
        row.querySelector(".status").textContent = s.status;
        row.querySelector(".attempts").textContent = String(s.attempts);
        row.querySelector(".took").textContent = s.duration || "";
        row.querySelector(".output").textContent = s.output || "";
        row.querySelector(".error").textContent = s.error || "";
      });
      // Decided or ended: the buttons that no longer apply go.
      if (r.status !== "awaiting_approval") {
        run.querySelectorAll(".approval").forEach(function (el) { el.remove(); });
      }
      if (r.finished && run.getAttribute("data-finished") !== "true") {
        run.querySelectorAll('form[action$="/cancel"]').forEach(function (el) { el.remove(); });
        runSource.close();
        run.setAttribute("data-finished", "true");
      }
    });
  }
})();
