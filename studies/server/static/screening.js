/* The headphone check: rounds of three noises played one after the other; the rater picks the one with the
   hidden tone (buttons or keys 1-3). The answers go to the server together at the end; it scores them (the
   answer key stays on the server) and the page moves on to the trials whatever the score. */
"use strict";
(function () {
  const playBtn = document.getElementById("play-round");
  const choices = Array.from(document.querySelectorAll(".interval"));
  const roundText = document.getElementById("round-text");
  const hint = document.getElementById("round-hint");
  const noise = document.getElementById("noise");
  let info = null;
  let round = 0;
  let answers = [];
  let heard = false;   // the current round has been played to the end at least once
  let busy = false;    // playing, or sending the answers

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function playOne(url) {
    return new Promise((resolve, reject) => {
      noise.onended = () => resolve();
      noise.onerror = () => reject(new Error("a noise could not be loaded"));
      noise.src = url;
      noise.play().catch(reject);
    });
  }

  function render() {
    if (!info) return;
    roundText.textContent = "Round " + (round + 1) + " of " + info.rounds;
    playBtn.disabled = busy;
    playBtn.textContent = heard ? "\u25B6 Play again" : "\u25B6 Play the three noises";
    for (const c of choices) c.disabled = busy || !heard;
    hint.textContent = busy ? "Listen..." : heard ? "Which noise had the tone? (keys 1, 2, 3)"
      : "Press Play to hear this round (key P).";
  }

  async function playRound() {
    if (busy || !info) return;
    busy = true;
    showError("");
    render();
    try {
      for (let i = 0; i < info.intervals; i++) {
        choices[i].classList.add("playing");
        await playOne(info.media[round][i]);
        choices[i].classList.remove("playing");
        if (i < info.intervals - 1) await sleep(info.gap_s * 1000);
      }
      heard = true;
    } catch (e) {
      showError("Playback failed: " + e.message);
    } finally {
      for (const c of choices) c.classList.remove("playing");
      busy = false;
      render();
    }
  }

  async function choose(n) {
    if (busy || !heard) return;
    answers.push(n);
    if (answers.length < info.rounds) {
      round += 1;
      heard = false;
      render();
      return;
    }
    busy = true;
    render();
    try {
      await api("/screening", { answers: answers });
      go("trials");
    } catch (e) {
      showError(e.message);
    }
  }

  playBtn.addEventListener("click", playRound);
  for (const c of choices) c.addEventListener("click", () => choose(Number(c.dataset.interval)));
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || isTextEntry(ev.target)) return;
    if (["1", "2", "3"].includes(ev.key)) { ev.preventDefault(); choose(Number(ev.key)); }
    else if (ev.key === "p" || ev.key === "P") { ev.preventDefault(); playRound(); }
  });

  api("/screening").then((data) => {
    if (data.done) { go("trials"); return; }
    info = data;
    render();
  }).catch((e) => showError(e.message));
})();
