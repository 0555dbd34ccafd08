// Follows an install on /appliance > Updates: state, activity, steps done, elapsed time.
// When the install is over the page reloads; when the new version has signed everyone
// out, it goes to the sign-in page, which says why.
(function () {
  "use strict";
  var box = document.getElementById("install-progress");
  if (!box) { return; }
  var running = document.getElementById("install-running");
  var scheduled = document.getElementById("install-scheduled");

  function setText(id, text) {
    var element = document.getElementById(id);
    if (element) { element.textContent = text; }
  }

  function show(view) {
    var busy = view.state === "installing" || view.state === "rolling back";
    running.hidden = !busy;
    if (scheduled) { scheduled.hidden = busy; }
    if (!busy) { return; }
    var banner = document.getElementById("install-banner");
    if (banner) { banner.hidden = true; }  // it announced the install that now runs
    box.className = view.state === "rolling back" ? "box warning" : "box info";
    setText("install-state", view.state);
    setText("install-release", view.release || "");
    setText("install-activity", view.activity);
    setText("install-done", String(view.done));
    setText("install-total", String(view.total));
    setText("install-elapsed", view.elapsed_seconds === null ? "0" : String(view.elapsed_seconds));
    var bar = document.getElementById("install-steps");
    bar.max = view.total || 1;
    bar.value = view.done;
  }

  function poll() {
    fetch(box.dataset.statusUrl, { credentials: "same-origin", cache: "no-store", redirect: "manual" })
      .then(function (response) {
        if (response.type === "opaqueredirect" || response.status === 401) {
          window.location.assign(box.dataset.signedOutUrl);
          return null;
        }
        if (!response.ok) { throw new Error("status " + response.status); }
        return response.json();
      })
      .then(function (view) {
        if (view === null) { return; }
        if (view.state === "idle") {
          window.location.assign(box.dataset.doneUrl);
          return;
        }
        show(view);
        window.setTimeout(poll, view.state === "scheduled" ? 2000 : 500);
      })
      .catch(function () { window.setTimeout(poll, 1000); });
  }

  poll();
})();
