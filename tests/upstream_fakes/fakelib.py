"""Shared by the fake upstream programs (tests only). They run as separate processes, like upstream would.

FAKE_UPSTREAM_MODE selects a failure: ok (default), exit (traceback + exit 1), nooutput (exit 0, no file),
short (output far too short), wrongsr (audio at 22050 Hz), hang (sleep past any timeout), garbage (an output
file that does not decode). Fakes draw their "music" from numpy's GLOBAL generator, which the seeding wrapper
seeds: equal seeds give equal outputs, as with upstream.
"""
import os
import sys
import time

import numpy as np
import soundfile as sf


def mode():
    return os.environ.get("FAKE_UPSTREAM_MODE", "ok")


def before_output(name=""):
    """Apply the failure modes that happen before upstream writes anything.

    FAKE_UPSTREAM_FAIL_ON=<text> makes only inputs whose `name` contains <text> exit with an error.
    """
    m = mode()
    fail_on = os.environ.get("FAKE_UPSTREAM_FAIL_ON")
    if fail_on and fail_on in name:
        m = "exit"
    if m == "hang":
        time.sleep(600)
    if m == "exit":
        print("processing %s" % name)
        print("Traceback (most recent call last):\n  ...\nRuntimeError: CUDA out of memory (fake)", file=sys.stderr)
        sys.exit(1)
    return m


def video_duration(path):
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        if s.duration is not None and s.time_base is not None:
            return float(s.duration * s.time_base)
        return float(c.duration) / 1e6


def _seconds_to_write(path, seconds, garbage):
    """The output length the failure mode asks for; None when nothing (or garbage, written here) is the output."""
    m = mode()
    if m == "nooutput":
        return None
    if m == "garbage":
        with open(path, "wb") as f:
            f.write(garbage)
        return None
    return max(0.5, seconds / 4) if m == "short" else seconds


def write_audio(path, seconds, sample_rate=32000, channels=1, subtype="PCM_16"):
    """Write noise-modulated tones of `seconds` (honouring the failure mode) to `path`."""
    seconds = _seconds_to_write(path, seconds, b"RIFF\x00\x00not really a wav")
    if seconds is None:
        return
    if mode() == "wrongsr":
        sample_rate = 22050
    n = max(1, int(round(seconds * sample_rate)))
    t = np.arange(n) / sample_rate
    f0 = 110.0 * 2 ** (np.random.randint(0, 24) / 12)
    x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.05 * np.random.randn(n)
    data = np.stack([x] * channels, axis=1) if channels > 1 else x
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    sf.write(path, data.astype(np.float32), sample_rate, subtype=subtype)


def write_midi(path, seconds, tempo_bpm=None, program=0):
    """A MIDI file of random notes spanning `seconds` at 120 BPM (or `tempo_bpm`), honouring the failure mode."""
    import mido

    seconds = _seconds_to_write(path, seconds, b"MThd garbage")
    if seconds is None:
        return
    mid = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    if tempo_bpm:
        tr.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm), time=0))
    tr.append(mido.Message("program_change", program=program, time=0))
    bpm = tempo_bpm or 120.0
    beats = int(np.ceil(seconds * bpm / 60.0))
    for _ in range(beats):
        note = int(48 + np.random.randint(0, 24))
        tr.append(mido.Message("note_on", note=note, velocity=90, time=0))
        tr.append(mido.Message("note_off", note=note, velocity=0, time=480))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    mid.save(path)


def step_modes(step, error):
    """Multi-step fakes (CMT's feature scripts): FAKE_CMT_FAIL_STEP=<step> prints `error` as a traceback and exits
    1; FAKE_CMT_SILENT_STEP=<step> exits 0 having written nothing."""
    if os.environ.get("FAKE_CMT_FAIL_STEP") == step:
        print("Traceback (most recent call last):\n" + error, file=sys.stderr)
        sys.exit(1)
    if os.environ.get("FAKE_CMT_SILENT_STEP") == step:
        sys.exit(0)
