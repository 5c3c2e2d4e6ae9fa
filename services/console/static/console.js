// Flowledger console: the only script (Content-Security-Policy: script-src 'self').
// Everything works without it; it adds two things: the instance page refreshes its live part
// (the status and the pages of steps and history it shows, never more) while the instance
// runs, and the as-of slider shows the version it points at.
"use strict";

(function () {
  var POLL_MS = 2000;

  function wireSlider(root) {
    var slider = root.querySelector("#as_of");
    var out = root.querySelector("#as_of_value");
    if (!slider || !out) return;
    slider.addEventListener("input", function () { out.textContent = slider.value; });
  }

  function poll() {
    var live = document.getElementById("live");
    if (!live || live.dataset.running !== "true") return;
    var base = live.dataset.liveUrl;  // names the pages of steps and history shown, if any
    var url = base + (base.indexOf("?") < 0 ? "?" : "&") + "since=" +
      encodeURIComponent(live.dataset.version);
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.headers.get("x-console-fragment") !== "live") {
          throw new Error("signed out or gone: " + response.status);
        }
        if (response.status === 204) return null;
        return response.text();
      })
      .then(function (html) {
        if (html !== null) {
          var fresh = new DOMParser().parseFromString(html, "text/html");
          var slider = document.getElementById("as_of");
          if (!(slider && document.activeElement === slider)) {
            var focused = document.activeElement && document.activeElement.id;
            var opened = [];
            document.querySelectorAll("#live-body details").forEach(function (d, i) {
              if (d.open) opened.push(i);
            });
            ["live", "live-body"].forEach(function (id) {
              var now = document.getElementById(id);
              var next = fresh.getElementById(id);
              if (now && next) now.replaceWith(next);
            });
            var details = document.querySelectorAll("#live-body details");
            opened.forEach(function (i) { if (details[i]) details[i].open = true; });
            wireSlider(document);
            if (focused) {
              var again = document.getElementById(focused);
              if (again) again.focus();
            }
          }
        }
        window.setTimeout(poll, POLL_MS);
      })
      .catch(function () {
        var note = document.getElementById("live-note");
        if (note) note.textContent = "Live updates stopped: reload the page.";
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    wireSlider(document);
    window.setTimeout(poll, POLL_MS);
  });
})();
