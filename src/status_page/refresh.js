// Fetches this page again every few seconds and swaps its content in, so
// the page stays put (no reload's flash, no lost scroll). Without
// JavaScript a <noscript> meta refresh reloads the page instead.
(function () {
  "use strict";
  var every = (Number(document.body.dataset.refresh) || 2) * 1000;
  var refreshes = 0;
  function stale(text) {
    var note = document.getElementById("stale");
    note.textContent = text;
    note.hidden = !text;
  }
  function refresh() {
    if (document.hidden) {
      setTimeout(refresh, every);
      return;
    }
    fetch(location.href, { cache: "no-store" })
      .then(function (response) { return response.text(); })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html");
        var main = fresh.getElementById("status");
        if (!main) { throw new Error("the answer is not the status page"); }
        document.getElementById("status").replaceWith(document.adoptNode(main));
        refreshes += 1;
        document.body.dataset.refreshes = String(refreshes);
        stale("");
      })
      .catch(function (error) {
        stale("Cannot reach tcpipe (" + error.message + "): showing the last answer.");
      })
      .then(function () { setTimeout(refresh, every); });
  }
  setTimeout(refresh, every);
})();
