/* Consent and volume-check pages: record the step, then go on. */
"use strict";
(function () {
  const agree = document.getElementById("agree");
  if (agree) {
    agree.addEventListener("click", async () => {
      agree.disabled = true;
      try { await api("/consent", {}); go("instructions"); }
      catch (e) { showError(e.message); agree.disabled = false; }
    });
  }
  const heard = document.getElementById("heard");
  const tone = document.getElementById("tone");
  if (heard && tone) {
    tone.addEventListener("play", () => { heard.disabled = false; });
    heard.addEventListener("click", async () => {
      heard.disabled = true;
      try { await api("/volume-check", {}); go("trials"); }
      catch (e) { showError(e.message); heard.disabled = false; }
    });
  }
})();
