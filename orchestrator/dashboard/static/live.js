// Live progress without a library: while a job on the page is queued or running, poll the page's
// JSON feed (/dashboard/live.json, the same summaries GET /api/jobs returns) every few seconds.
// Progress bars update in place; a changed status or a new job reloads the page (server-rendered
// charts and tables then catch up). Pages marked data-live-mode="reload" also reload on progress.
(function () {
  "use strict";
  var source = document.body.getAttribute("data-live");
  if (!source) { return; }
  var reloadOnProgress = document.body.getAttribute("data-live-mode") === "reload";
  var period = 3000;

  function shown(id, attribute) {
    var found = null;
    document.querySelectorAll("[" + attribute + "]").forEach(function (node) {
      if (node.getAttribute(attribute) === id) { found = node; }
    });
    return found;
  }

  function statusOf(id) {
    var cell = shown(id, "data-job-status");
    var badge = cell && cell.querySelector(".status");
    return badge ? badge.textContent.trim() : null;
  }

  function tick() {
    fetch(source, { credentials: "same-origin", headers: { "Accept": "application/json" }, cache: "no-store" })
      .then(function (response) {
        if (!response.ok) { throw new Error("live feed answered " + response.status); }
        return response.json();
      })
      .then(function (data) {
        var reload = false;
        data.jobs.forEach(function (job) {
          var bar = shown(job.id, "data-job-id");
          var before = statusOf(job.id);
          if (before === null || before !== job.status) { reload = true; return; }
          if (bar && Math.abs(parseFloat(bar.value) - job.progress) > 1e-6) {
            if (reloadOnProgress) { reload = true; return; }
            bar.value = job.progress;
            var pct = shown(job.id, "data-job-pct");
            if (pct) { pct.textContent = Math.round(job.progress * 100) + "%"; }
          }
        });
        if (reload) { window.location.reload(); return; }
        if (data.live) { window.setTimeout(tick, period); }
      })
      .catch(function () { window.setTimeout(tick, period * 3); });
  }

  window.setTimeout(tick, period);
}());
