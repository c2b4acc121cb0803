// Progressive enhancement only: every page works without this. It keeps open pages current by listening to
// /ui/events and re-fetching the page (through the same checked route) when something it shows changed.
(function () {
  "use strict";
  var live = document.body.dataset.live;
  if (!live || !window.EventSource) return;
  var prefix = "/ui";
  var pending = null;

  function refresh(quiet) {
    if (pending) return;
    pending = setTimeout(function () {
      pending = null;
      fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (!html) return;
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.querySelectorAll("[data-live-region]");
          document.querySelectorAll("[data-live-region]").forEach(function (old, i) {
            if (fresh[i] && old.innerHTML !== fresh[i].innerHTML) {
              old.innerHTML = fresh[i].innerHTML;
              if (quiet) return;  // the health page's periodic refresh: no flash every few seconds
              old.classList.remove("live-flash"); void old.offsetWidth; old.classList.add("live-flash");
            }
          });
        });
    }, 200);
  }

  var events = new EventSource(prefix + "/events");
  events.addEventListener("memory", function (e) {
    var d = JSON.parse(e.data);
    // A memory's page shows its neighbourhood and the memories naming the same things, which any readable
    // write may change (a link two steps away, a new mention): it follows every memory event.
    if (live === "cubes" || live === "cube:" + d.cube || live.indexOf("memory:") === 0) refresh();
  });
  events.addEventListener("cubes", function () {
    if (live === "cubes" || live.indexOf("cube:") === 0) refresh();
  });
  events.addEventListener("task", function () { if (live === "tasks") refresh(); });
  events.addEventListener("tick", function () { if (live === "health") refresh(true); });
  events.addEventListener("signed-out", function () { events.close(); location.href = prefix + "/sign-in"; });
})();
