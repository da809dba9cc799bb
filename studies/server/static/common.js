/* Helpers shared by the rater pages: the rater id, JSON calls to the API, error display, keyboard guards. */
"use strict";
const RATER = document.body.dataset.rater;

function showError(message) {
  const el = document.getElementById("error");
  el.textContent = message || "";
  el.hidden = !message;
}

async function api(path, body, options) {
  const init = Object.assign({ method: body === undefined ? "GET" : "POST", headers: {} }, options || {});
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch("/api/raters/" + encodeURIComponent(RATER) + path, init);
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (!resp.ok) {
    const detail = data && data.detail;
    const err = new Error((detail && detail.message) || ("request failed (" + resp.status + ")"));
    err.status = resp.status;
    err.detail = detail;
    throw err;
  }
  return data;
}

function go(step) {
  window.location.assign("/" + step + "?rater=" + encodeURIComponent(RATER));
}

function randomId() {
  const bytes = new Uint8Array(12);
  window.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// Keyboard shortcuts never fire while the rater types: in text fields, text areas, selects or editable content.
function isTextEntry(el) {
  if (!el || !el.tagName) return false;
  if (el.isContentEditable || el.tagName === "TEXTAREA" || el.tagName === "SELECT") return true;
  return el.tagName === "INPUT" && !["radio", "checkbox", "range", "button", "submit"].includes(el.type);
}
