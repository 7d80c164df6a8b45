//! The status page's one script, `GET /page.js` (no build step: plain JavaScript
//! kept here): it follows `GET /api/v1/events/stream` from the newest event the
//! page was rendered with (`data-last-event` on the body; the browser's
//! `EventSource` resumes with `Last-Event-ID` after a drop), and when an event names
//! a build it fetches that build's row as the server renders it (`GET
//! /builds/{key}?part=row`) and puts it in place of the old one, and recolours the
//! build's nodes in the dependency graphs. Nothing of an event's data is ever
//! parsed as HTML: its build key is only URL-encoded into the request, and the
//! event's line in "Recent events" is written with `textContent`. The badge in the
//! heading says whether the page is live (`data-live` on the body: `open` or
//! `closed`). Without the script the page is complete, only not live.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const SCRIPT: &str = r#""use strict";
(function () {
  // The kinds of events the page shows as they come.
  var KINDS = ["delivered", "delivery_failed", "result", "result_unknown"];
  var body = document.body;
  var badge = document.getElementById("live");
  function live(state, text) {
    body.setAttribute("data-live", state);
    if (badge) {
      badge.textContent = text;
      badge.className = "live-" + state;
    }
  }
  var after = body.getAttribute("data-last-event");
  var url = "/api/v1/events/stream" + (after ? "?after=" + encodeURIComponent(after) : "");
  var source = new EventSource(url);
  source.onopen = function () { live("open", "live"); };
  source.onerror = function () { live("closed", "reconnecting"); };

  function withKey(selector, attribute, key) {
    return Array.prototype.filter.call(document.querySelectorAll(selector), function (el) {
      return el.getAttribute(attribute) === key;
    });
  }

  // The server's rendering of the row (escaped by its template), in place of the old one.
  function apply(key, html) {
    var doc = new DOMParser().parseFromString("<table><tbody>" + html + "</tbody></table>", "text/html");
    var fresh = doc.querySelector("tr[data-key]");
    if (!fresh || fresh.getAttribute("data-key") !== key) { return; }
    var rows = withKey("tr[data-key]", "data-key", key);
    var list = document.getElementById("builds-body");
    if (rows.length === 0 && list && body.getAttribute("data-filtered") !== "true") {
      list.insertBefore(document.importNode(fresh, true), list.firstChild);
    }
    rows.forEach(function (old) { old.replaceWith(document.importNode(fresh, true)); });
    var state = fresh.getAttribute("data-state") || "none";
    withKey("g[data-node]", "data-node", key).forEach(function (node) {
      node.setAttribute("class", "node st-" + state);
    });
  }

  // One fetch per build at a time; an event during it fetches once more after it.
  var fetching = {};
  function refresh(key) {
    if (fetching[key]) { fetching[key] = "again"; return; }
    fetching[key] = "once";
    fetch("/builds/" + encodeURIComponent(key) + "?part=row", { headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) { apply(key, html); } })
      .catch(function () {})
      .then(function () {
        var again = fetching[key] === "again";
        delete fetching[key];
        if (again) { refresh(key); }
      });
  }

  function note(event) {
    var list = document.getElementById("events-body");
    if (!list) { return; }
    var tr = document.createElement("tr");
    [event.time, event.kind, event.build_key || event.workspace || "", event.message].forEach(function (text, i) {
      var td = document.createElement("td");
      if (i === 0) { td.className = "muted"; }
      td.textContent = String(text);
      tr.appendChild(td);
    });
    list.insertBefore(tr, list.firstChild);
    while (list.rows.length > 30) { list.deleteRow(-1); }
  }

  KINDS.forEach(function (kind) {
    source.addEventListener(kind, function (message) {
      var event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      note(event);
      if (typeof event.build_key === "string") { refresh(event.build_key); }
    });
  });
})();
"#;

/// `GET /page.js`.
pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
        .into_response()
}
