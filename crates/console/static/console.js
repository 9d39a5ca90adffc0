// uplink console: the one script. It refreshes the sensors table in place every few seconds
// (the table's data-refresh), by fetching this same page and swapping the table's body. The
// page works without it.
"use strict";
(function () {
  var table = document.getElementById("sensors");
  if (!table || !window.fetch || !window.DOMParser) return;
  var secs = parseInt(table.getAttribute("data-refresh"), 10);
  if (!(secs > 0)) return;
  function refresh() {
    if (document.hidden) return;
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        if (!text) return;
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.querySelector("#sensors tbody");
        var old = table.querySelector("tbody");
        if (fresh && old) old.replaceWith(document.importNode(fresh, true));
        var count = doc.getElementById("count");
        var here = document.getElementById("count");
        if (count && here) here.textContent = count.textContent;
      })
      .catch(function () {});
  }
  window.setInterval(refresh, secs * 1000);
})();
