"""MIDI -> audio with FluidSynth and a General MIDI SoundFont (for CMT, Video2Music and Diff-BGM outputs).

FluidSynth renders the whole file, including release tails; the adapter then trims or pads the audio to the
clip's duration. The SoundFont is part of every MIDI system's identity (two SoundFonts make two different
systems as far as audio metrics are concerned), so :func:`soundfont_identity` goes into provenance.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from vm_eval.fsutil import file_sha256
from vm_eval.media import Audio, load_audio

RENDER_RATE = 32000  # Hz: the rate of the audio systems we compare with (MusicGen's)
RENDER_GAIN = 0.5  # FluidSynth's default of 0.2 renders GM piano at about -30 dBFS; 0.5 is closer to mastered music


class MidiRenderError(RuntimeError):
    pass


def fluidsynth_binary() -> Path | None:
    found = shutil.which("fluidsynth")
    return Path(found) if found else None


def soundfont_identity(soundfont: Path) -> dict:
    return {"name": f"soundfont:{soundfont.name}", "path": str(soundfont), "sha256": file_sha256(soundfont)}


def render_midi(midi: Path, soundfont: Path | None, out_wav: Path, sample_rate: int = RENDER_RATE,
                gain: float = RENDER_GAIN, timeout_s: float = 600.0) -> Audio:
    """Render `midi` to a stereo float WAV at `sample_rate` Hz with FluidSynth; return the decoded audio."""
    binary = fluidsynth_binary()
    if binary is None:
        raise MidiRenderError("fluidsynth is not installed (Debian: apt-get install fluidsynth fluid-soundfont-gm; "
                              "`make test`/`make demo` install it)")
    if soundfont is None or not Path(soundfont).is_file():
        raise MidiRenderError(f"SoundFont {soundfont or '(none configured)'} not found: install fluid-soundfont-gm "
                              "or set [midi] soundfont in vm-eval.toml / $VM_EVAL_SOUNDFONT")
    if not Path(midi).is_file() or Path(midi).stat().st_size == 0:
        raise MidiRenderError(f"MIDI file {midi} is missing or empty")
    out_wav.parent.mkdir(parents=True, exist_ok=True)
    out_wav.unlink(missing_ok=True)
    # -n: no MIDI input driver, -i: no shell, -q: quiet; -F renders to the file as fast as possible.
    argv = [str(binary), "-n", "-i", "-q", "-g", f"{gain:g}", "-r", str(sample_rate), "-T", "wav", "-O", "float",
            "-F", str(out_wav), str(soundfont), str(midi)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise MidiRenderError(f"fluidsynth did not finish rendering {midi} in {timeout_s:g} s") from None
    if proc.returncode != 0 or not out_wav.is_file() or out_wav.stat().st_size <= 44:
        err = (proc.stderr or proc.stdout or "").strip().splitlines()[-5:]
        raise MidiRenderError(f"fluidsynth failed on {midi} (exit {proc.returncode}): {' | '.join(err) or 'no output'}")
    return load_audio(out_wav)


def midi_duration_s(midi: Path) -> float:
    """Length of a MIDI file in seconds, tempo changes included."""
    import mido

    return float(mido.MidiFile(str(midi)).length)


def set_tempo(midi: Path, out: Path, bpm: float) -> Path:
    """Copy `midi` with every tempo event replaced by one tempo of `bpm` beats per minute at time 0.

    CMT writes no tempo event (so players assume 120 BPM) although it composes bars against the video's tempo;
    the adapter restores that tempo before rendering.
    """
    import mido

    if not 20.0 <= bpm <= 400.0:
        raise ValueError(f"tempo {bpm} BPM is outside 20-400")
    src = mido.MidiFile(str(midi))
    dst = mido.MidiFile(type=src.type, ticks_per_beat=src.ticks_per_beat)
    for i, track in enumerate(src.tracks):
        new = mido.MidiTrack()
        carry = 0  # delta ticks of removed tempo events move to the next message
        if i == 0:
            new.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
        for msg in track:
            if msg.is_meta and msg.type == "set_tempo":
                carry += msg.time
                continue
            new.append(msg.copy(time=msg.time + carry))
            carry = 0
        dst.tracks.append(new)
    out.parent.mkdir(parents=True, exist_ok=True)
    dst.save(str(out))
    return out
