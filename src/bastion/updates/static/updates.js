// Fills the download progress bar on /appliance/updates, then shows the result.
(function () {
  "use strict";
  var box = document.getElementById("download-job");
  if (!box) { return; }
  var bar = document.getElementById("download-progress");
  var text = document.getElementById("download-bytes");

  function show(job) {
    if (job.total > 0) {
      bar.max = job.total;
      bar.value = job.done;
      text.textContent = job.done.toLocaleString() + " of " + job.total.toLocaleString() + " bytes";
    }
  }

  function poll() {
    fetch(box.dataset.jobUrl, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) { window.location.assign("/appliance/updates"); return null; }
        return response.json();
      })
      .then(function (job) {
        if (job === null) { return; }
        show(job);
        if (job.state === "running") { window.setTimeout(poll, 500); }
        else { window.location.assign(box.dataset.doneUrl); }
      })
      .catch(function () { window.setTimeout(poll, 2000); });
  }

  poll();
})();
