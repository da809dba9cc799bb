/* The trial page: one muted video, two soundtracks (A and B) kept in sync with the video's currentTime, only one
   playing at a time. Every play / pause / ended / seek is reported to the server at once; the answers unlock
   once both soundtracks have played for min_listen_s (counted here from the video's progress; the server credits
   its own count, from its clock between the arrivals of a play and the next pause / switch / ended, before it
   accepts a vote). Each side shows whether it has been listened to long enough; keyboard shortcuts (A / B,
   Space, 1 / 2 / 3, Enter) work except while typing in a text field; the practice trial is labelled as such. */
"use strict";
(function () {
  const video = document.getElementById("video");
  const audio = { A: document.getElementById("audio-A"), B: document.getElementById("audio-B") };
  const buttons = { A: document.getElementById("play-A"), B: document.getElementById("play-B") };
  const pauseBtn = document.getElementById("pause");
  const seek = document.getElementById("seek");
  const timeEl = document.getElementById("time");
  const hint = document.getElementById("listen-hint");
  const rule = document.getElementById("listen-rule");
  const badges = { A: document.getElementById("listened-A"), B: document.getElementById("listened-B") };
  const root = document.getElementById("trial-root").dataset;  // the study's minimum and the short-clip bound
  const form = document.getElementById("questions");
  const next = document.getElementById("next");
  const DRIFT_S = 0.12;

  let trial = null;       // the server's trial payload
  let active = null;      // side whose soundtrack is selected ("A" / "B")
  let playing = false;
  let lastTime = 0;
  let listened = { A: 0, B: 0 };
  let choices = {};

  function fmt(t) {
    const s = Math.max(0, Math.floor(t));
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }

  // The server credits listening from the arrival times of these events, one event per request (a batch would
  // arrive at one instant and credit nothing), so they are sent one after another (a queue), and a vote waits for
  // the queue: concurrent fetches can arrive out of order, and a vote that overtook the final "pause" was refused
  // for lack of listening that had in fact happened. The session cookie set at consent goes with every call.
  let sending = Promise.resolve();

  function report(side, event) {
    if (!trial) return sending;
    const path = "/trials/" + trial.token + "/events";
    const body = { events: [{ side: side, event: event, media_time: Math.max(0, video.currentTime || 0),
                              client_time: Date.now() }] };
    sending = sending.then(() => api(path, body, { keepalive: true })).catch((e) => showError(e.message));
    return sending;
  }

  function unlocked() {
    return trial && listened.A >= trial.min_listen_s && listened.B >= trial.min_listen_s;
  }

  // The question that keys 1 / 2 (3: no preference) answer: the first one without an answer yet.
  function currentQuestion() {
    if (!trial) return null;
    return trial.questions.find((q) => !choices[q.id] && !trial.answered[q.id]) || null;
  }

  function render() {
    for (const side of ["A", "B"]) buttons[side].setAttribute("aria-pressed", String(playing && active === side));
    pauseBtn.disabled = !playing;
    timeEl.textContent = fmt(video.currentTime || 0) + " / " + fmt(video.duration || 0);
    const open = unlocked();
    if (trial) {
      const min = trial.min_listen_s;
      const left = ["A", "B"].filter((s) => listened[s] < min);
      hint.textContent = open ? "You can answer now (you may keep listening)."
        : left.length === 2 ? "Listen to each soundtrack for at least " + min + " s to unlock the answers."
          : "Listen to soundtrack " + left[0] + " for at least " + min + " s to unlock the answers.";
      rule.textContent = min < parseFloat(root.minListen)
        ? "This clip is shorter than " + root.shortClip + " s, so the minimum is half its length (" + min
          + " s) instead of " + root.minListen + " s." : "";
      for (const side of ["A", "B"]) {
        const done = listened[side] >= min;
        badges[side].classList.toggle("done", done);
        badges[side].textContent = done ? "\u2713 listened" : Math.floor(listened[side]) + " / " + min + " s";
      }
    }
    const cur = currentQuestion();
    for (const fs of form.querySelectorAll("fieldset")) {
      fs.disabled = !open || fs.dataset.answered === "1";
      fs.classList.toggle("current", open && cur !== null && fs.dataset.question === cur.id);
    }
    const all = trial && trial.questions.every((q) => choices[q.id] || trial.answered[q.id]);
    next.disabled = !(open && all);
  }

  function choose(opt) {
    const q = currentQuestion();
    if (!q || !unlocked() || !trial.options.includes(opt)) return;
    const input = form.querySelector("input[name='q-" + q.id + "'][value='" + opt + "']");
    if (input) input.checked = true;
    choices[q.id] = opt;
    render();
  }

  function stopAudio(side) {
    if (!audio[side].paused) audio[side].pause();
  }

  async function playSide(side) {
    if (playing && active === side) return;
    if (playing && active && active !== side) {
      stopAudio(active);
      report(active, "pause");
    }
    if (video.ended || (video.duration && video.currentTime >= video.duration - 0.05)) video.currentTime = 0;
    active = side;
    const a = audio[side];
    a.currentTime = video.currentTime;
    playing = true;
    lastTime = video.currentTime;
    report(side, "play");
    render();
    try { await Promise.all([video.play(), a.play()]); }
    catch (e) { showError("Playback failed: " + e.message); pause(); }
  }

  function pause() {
    if (!playing) return;
    playing = false;
    video.pause();
    if (active) { stopAudio(active); report(active, "pause"); }
    render();
  }

  video.addEventListener("timeupdate", () => {
    const t = video.currentTime;
    if (playing && active) {
      const d = t - lastTime;
      if (d > 0 && d < 1) listened[active] += d;
      const a = audio[active];
      if (Math.abs(a.currentTime - t) > DRIFT_S) a.currentTime = t;
    }
    lastTime = t;
    if (!seek.matches(":active")) seek.value = String(t);
    render();
  });
  video.addEventListener("loadedmetadata", () => { seek.max = String(video.duration || 1); render(); });
  video.addEventListener("ended", () => {
    if (playing && active) { stopAudio(active); report(active, "ended"); }
    playing = false;
    render();
  });
  video.addEventListener("volumechange", () => { if (!video.muted) video.muted = true; });
  for (const side of ["A", "B"]) {
    buttons[side].addEventListener("click", () => playSide(side));
    audio[side].addEventListener("waiting", () => { if (playing && active === side) video.pause(); });
    audio[side].addEventListener("playing", () => { if (playing && active === side && video.paused) video.play(); });
  }
  pauseBtn.addEventListener("click", pause);
  seek.addEventListener("input", () => {
    const t = parseFloat(seek.value) || 0;
    video.currentTime = t;
    lastTime = t;
    if (active) audio[active].currentTime = t;
    if (playing && active) report(active, "seek");
    render();
  });

  function buildQuestions() {
    form.textContent = "";
    const labels = { A: "A", B: "B", tie: "No preference" };
    for (const q of trial.questions) {
      const fs = document.createElement("fieldset");
      fs.dataset.answered = trial.answered[q.id] ? "1" : "0";
      fs.dataset.question = q.id;
      const lg = document.createElement("legend");
      lg.textContent = q.text;
      fs.appendChild(lg);
      for (const opt of trial.options) {
        const label = document.createElement("label");
        const input = document.createElement("input");
        input.type = "radio";
        input.name = "q-" + q.id;
        input.value = opt;
        input.checked = trial.answered[q.id] === opt;
        input.addEventListener("change", () => { choices[q.id] = opt; render(); });
        label.appendChild(input);
        label.appendChild(document.createTextNode(" " + labels[opt]));
        fs.appendChild(label);
      }
      form.appendChild(fs);
    }
  }

  function show(state) {
    if (state.complete || !state.trial) { go("done"); return; }
    pause();
    trial = state.trial;
    active = null;
    choices = {};
    listened = { A: trial.listened.A || 0, B: trial.listened.B || 0 };
    document.getElementById("progress-text").textContent = trial.practice ? "Practice trial"
      : "Trial " + trial.index + " of " + trial.total;
    document.getElementById("practice-note").hidden = !trial.practice;
    const bar = document.getElementById("progress");
    bar.max = trial.total;
    bar.value = trial.practice ? 0 : trial.index - 1;  // trials are answered in order
    video.src = trial.video;
    audio.A.src = trial.media.A;
    audio.B.src = trial.media.B;
    video.currentTime = 0;
    lastTime = 0;
    seek.value = "0";
    buildQuestions();
    showError("");
    render();
    window.scrollTo(0, 0);
  }

  next.addEventListener("click", async (ev) => {
    ev.preventDefault();
    const answers = {};
    for (const q of trial.questions) if (!trial.answered[q.id]) answers[q.id] = choices[q.id];
    next.disabled = true;
    try {
      pause();
      await sending;
      await api("/trials/" + trial.token + "/votes", { answers: answers, submission_id: randomId(),
                                                       client_time: Date.now() });
      show(await api("/state"));
    } catch (e) {
      if (e.detail && e.detail.listened) {
        listened = { A: Math.min(listened.A, e.detail.listened.A), B: Math.min(listened.B, e.detail.listened.B) };
      }
      showError(e.message);
      render();
    }
  });
  form.addEventListener("submit", (ev) => ev.preventDefault());

  // Keyboard: A / B play a soundtrack, Space pauses or resumes, 1 / 2 (3: no preference) answer the highlighted
  // question, Enter goes on. Never while the rater types in a text field (isTextEntry, common.js).
  document.addEventListener("keydown", (ev) => {
    if (!trial || ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat || isTextEntry(ev.target)) return;
    const k = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
    if (k === "a" || k === "b") playSide(k.toUpperCase());
    else if (k === " ") { if (playing) pause(); else playSide(active || "A"); }
    else if (k === "1" || k === "2" || k === "3") choose({ 1: "A", 2: "B", 3: "tie" }[k]);
    else if (k === "Enter") { if (!next.disabled) next.click(); }
    else return;
    ev.preventDefault();  // e.g. Space would also press a focused button, Enter submit twice
  });

  api("/state").then((state) => {
    if (!state.volume_checked) { go("instructions"); return; }
    show(state);
  }).catch((e) => showError(e.message));
})();
