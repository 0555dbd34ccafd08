// The web console on /console: "Start session" posts the row's form (CSRF token, signed-in
// cookie) with the terminal's size and gets the session's terminal path and single-use
// token; the terminal WebSocket on this origin then speaks the access console's
// conversation (bastion.access_console.protocol): console_hello first, keystrokes as
// binary frames (UTF-8), resize and end as text; the site answers with output as binary
// frames and started, exited or ended as text.
(function () {
  "use strict";
  var section = document.getElementById("session");
  if (!section || typeof Terminal === "undefined") { return; }
  var statusLine = document.getElementById("session-status");
  var errorBox = document.getElementById("console-error");
  var endButton = document.getElementById("end-session");
  var title = document.getElementById("session-title");
  var encoder = new TextEncoder();
  var CHUNK = 64 * 1024;  // under the site's 128 KiB frame cap
  var terminal = null;
  var fit = null;
  var socket = null;
  var finished = false;

  function say(text) { statusLine.textContent = text; }

  function refuse(text) {
    errorBox.textContent = text;
    errorBox.hidden = false;
  }

  function live() { return socket !== null && socket.readyState <= WebSocket.OPEN; }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) { socket.send(JSON.stringify(message)); }
  }

  function sendBytes(bytes) {
    if (!socket || socket.readyState !== WebSocket.OPEN) { return; }
    for (var start = 0; start < bytes.length; start += CHUNK) {
      socket.send(bytes.subarray(start, start + CHUNK));
    }
  }

  function latin1(data) {
    var bytes = new Uint8Array(data.length);
    for (var i = 0; i < data.length; i++) { bytes[i] = data.charCodeAt(i) & 0xff; }
    return bytes;
  }

  function makeTerminal() {
    // The theme and font are those of web-console.css (the DOM renderer's own <style>
    // elements are refused by the Content-Security-Policy).
    terminal = new Terminal({
      fontFamily: '"DejaVu Sans Mono", Menlo, Consolas, "Liberation Mono", monospace',
      fontSize: 14,
      cursorBlink: false,
      scrollback: 5000,
      theme: { foreground: "#ffffff", background: "#000000", cursor: "#ffffff" }
    });
    fit = new FitAddon.FitAddon();
    terminal.loadAddon(fit);
    terminal.open(document.getElementById("terminal"));
    terminal.onData(function (data) { sendBytes(encoder.encode(data)); });
    terminal.onBinary(function (data) { sendBytes(latin1(data)); });
    terminal.onResize(function (size) {
      send({ type: "resize", cols: size.cols, rows: size.rows });
    });
    window.addEventListener("resize", function () { fit.fit(); });
  }

  function size() {
    fit.fit();
    return { cols: Math.min(Math.max(terminal.cols, 1), 1000),
             rows: Math.min(Math.max(terminal.rows, 1), 1000) };
  }

  // A refusal is the site's error page (or JSON); its message is what the page shows.
  function refusalOf(response) {
    var type = response.headers.get("content-type") || "";
    if (response.redirected || (response.ok && type.indexOf("text/html") === 0)) {
      return Promise.resolve("You are no longer signed in. Reload the page and sign in again.");
    }
    return response.text().then(function (text) {
      if (type.indexOf("application/json") === 0) {
        try { return JSON.parse(text).error.message; } catch (e) { return text; }
      }
      var page = new DOMParser().parseFromString(text, "text/html");
      var message = page.getElementById("error-message");
      return message ? message.textContent.trim() : "The site refused (" + response.status + ").";
    });
  }

  function fromSite(text) {
    var message;
    try { message = JSON.parse(text); } catch (e) { return; }
    if (message.type === "started") {
      say("Connected to " + title.textContent + ".");
      terminal.focus();
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
    socket = new WebSocket(scheme + window.location.host + opened.terminal_path);
    socket.binaryType = "arraybuffer";
    finished = false;
    endButton.disabled = false;
    socket.onopen = function () {
      send({ type: "console_hello", token: opened.token });
      say("Waiting for the Jump Client to join…");
    };
    socket.onmessage = function (event) {
      if (typeof event.data === "string") { fromSite(event.data); }
      else { terminal.write(new Uint8Array(event.data)); }
    };
    socket.onclose = function (event) {
      endButton.disabled = true;
      if (!finished) {
        say("The session ended" + (event.reason ? ": " + event.reason : ".") );
      }
      socket = null;
    };
  }

  function start(form) {
    if (live()) {
      refuse("A session is open on this page; end it before starting another.");
      return;
    }
    errorBox.hidden = true;
    section.hidden = false;
    if (terminal === null) { makeTerminal(); }
    terminal.reset();
    title.textContent = form.closest("tr").cells[0].textContent;
    var body = new FormData(form);
    var wanted = size();
    body.append("cols", String(wanted.cols));
    body.append("rows", String(wanted.rows));
    say("Starting…");
    fetch(form.action, { method: "POST", body: body, credentials: "same-origin",
                         headers: { Accept: "application/json" } })
      .then(function (response) {
        var type = response.headers.get("content-type") || "";
        if (response.ok && type.indexOf("application/json") === 0) {
          return response.json().then(connect);
        }
        return refusalOf(response).then(function (message) {
          say("Not started.");
          refuse(message);
        });
      })
      .catch(function () {
        say("Not started.");
        refuse("The site could not be reached; check the connection and try again.");
      });
  }

  // The buttons come disabled: a click before this script ran would post the plain form
  // and show its JSON answer instead of a terminal.
  document.querySelectorAll("form.start-session").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      start(form);
    });
    form.querySelectorAll("button[data-ready-with-script]").forEach(function (button) {
      button.disabled = false;
    });
  });

  endButton.addEventListener("click", function () {
    say("Ending…");
    send({ type: "end" });
  });
})();
