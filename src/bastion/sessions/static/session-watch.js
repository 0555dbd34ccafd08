// Watching a session on /login/reports/<id>/watch: the page's form (CSRF token, signed-in
// cookie) is posted for the watch's path and single-use token; the WebSocket on this
// origin then says console_hello with it, and the site answers watching (the terminal's
// size), the session's recent output and then its output as binary frames, resized, and
// exited or ended last (bastion.access_console.protocol). The terminal takes no input.
(function () {
  "use strict";
  var form = document.getElementById("watch-form");
  if (!form || typeof Terminal === "undefined") { return; }
  var statusLine = document.getElementById("watch-status");
  var errorBox = document.getElementById("watch-error");
  var finished = false;
  var terminal = new Terminal({
    fontFamily: '"DejaVu Sans Mono", Menlo, Consolas, "Liberation Mono", monospace',
    fontSize: 14,
    disableStdin: true,
    cursorBlink: false,
    scrollback: 5000,
    theme: { foreground: "#ffffff", background: "#000000", cursor: "#ffffff" }
  });
  terminal.open(document.getElementById("terminal"));

  function say(text) { statusLine.textContent = text; }

  function refuse(text) {
    errorBox.textContent = text;
    errorBox.hidden = false;
    say("Not watching.");
  }

  function fit(cols, rows) {
    terminal.resize(Math.min(Math.max(cols, 1), 1000), Math.min(Math.max(rows, 1), 1000));
  }

  function fromSite(text) {
    var message;
    try { message = JSON.parse(text); } catch (e) { return; }
    if (message.type === "watching") {
      fit(message.cols, message.rows);
      say("Watching " + message.title + ".");
    } else if (message.type === "resized") {
      fit(message.cols, message.rows);
    } else if (message.type === "exited") {
      finished = true;
      say("The remote shell exited with code " + message.code + ".");
    } else if (message.type === "ended") {
      finished = true;
      say("The session ended: " + message.reason);
    }
  }

  function connect(opened) {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + opened.watch_path);
    socket.binaryType = "arraybuffer";
    socket.onopen = function () {
      socket.send(JSON.stringify({ type: "console_hello", token: opened.token }));
    };
    socket.onmessage = function (event) {
      if (typeof event.data === "string") { fromSite(event.data); }
      else { terminal.write(new Uint8Array(event.data)); }
    };
    socket.onclose = function (event) {
      if (!finished) {
        say("No longer watching" + (event.reason ? ": " + event.reason : "."));
      }
    };
  }

  function refusalOf(response) {
    var type = response.headers.get("content-type") || "";
    if (response.redirected || (response.ok && type.indexOf("text/html") === 0)) {
      return Promise.resolve("You are no longer signed in. Reload the page and sign in again.");
    }
    return response.text().then(function (text) {
      var page = new DOMParser().parseFromString(text, "text/html");
      var message = page.getElementById("error-message");
      return message ? message.textContent.trim() : "The site refused (" + response.status + ").";
    });
  }

  fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin",
                       headers: { Accept: "application/json" } })
    .then(function (response) {
      var type = response.headers.get("content-type") || "";
      if (response.ok && type.indexOf("application/json") === 0) {
        return response.json().then(connect);
      }
      return refusalOf(response).then(refuse);
    })
    .catch(function () {
      refuse("The site could not be reached; check the connection and reload the page.");
    });
})();
