"""Video2Music (Kang et al. 2024): affective multimodal transformer predicting chords, arpeggiated into MIDI.

Upstream's README `generate.py` only runs on its bundled dataset (hard-coded test id); the documented route for a
new video is the Python API ``Video2music(device).generate(video, primer, key)``. vm-eval runs it per clip through
``baselines/external/wrappers/video2music_generate.py`` under upstream's interpreter (see that file), which seeds
random / numpy / torch with the clip's seed right before ``generate()`` (upstream has no seed argument; chords are
drawn with torch's global generator) and copies ``output/output.mid`` out.

Why a private folder per clip rather than a lock in the checkout: ``generate()`` deletes and recreates ./feature
and ./output in its working directory and reads its weights, SoundFont and chord vocabularies by relative paths.
The wrapper builds that layout with symlinks in the clip's own work folder, so concurrent runs (two vm-eval
processes, or a user's own session in the checkout) cannot destroy each other's features or outputs, nothing is
written into the checkout, and no run waits on another. A lock would serialise every clip of every run on the
machine and still delete whatever a user keeps in <checkout>/output.

Known facts handled here (upstream notes at the commit in SPEC):
- utilities/device.py keeps USE_CUDA = False, so a CUDA model meets CPU tensors in the sampling loop: for a CUDA
  device the wrapper calls ``use_cuda(True)`` and builds the model on "cuda:0" with CUDA_VISIBLE_DEVICES selecting
  the configured GPU; "cpu" hides every GPU (CLIP features then run on the CPU too).
- The video path goes unquoted into a shell command: the wrapper hands upstream a fixed relative name.
- Upstream always writes 300 chords of 1 s (2 beats at 120 BPM) whatever the video length and conditions on the
  first 300 s of video only: clips longer than 300 s are not applicable; the MIDI is cut 1 s after the clip's end
  before FluidSynth renders it (the render is then trimmed to the clip exactly).
- generate() also renders a preview (output.flac / output.mp4) with soundfonts/default_sound_font.sf2; those are
  discarded, so the wrapper points that name at vm-eval's SoundFont and upstream's own need not be downloaded.
- CLIP ViT-L/14@336px is downloaded by the `clip` package on first use (~/.cache/clip): pre-cache it for offline use.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from baselines.external.adapter import CheckpointSpec, ExternalSystem, UpstreamSpec, safe_stem
from baselines.external.process import WRAPPERS

WRAPPER = WRAPPERS / "video2music_generate.py"
TAIL_S = 1.0  # MIDI kept past the clip's end before rendering (the render is trimmed to the clip afterwards)
KEYS = ("C major", "G major", "D major", "A major", "E major", "B major", "F major", "Bb major", "Eb major",
        "Ab major", "Db major", "Gb major", "A minor", "E minor", "B minor", "F# minor", "C# minor", "G# minor",
        "D minor", "G minor", "C minor", "F minor", "Bb minor", "Eb minor")  # video2music.py:38-44
CLIP_PRECACHE = ("upstream's `clip` package downloads CLIP ViT-L/14@336px on first use into ~/.cache/clip of the user "
                 "running it: pre-cache it once in upstream's environment with "
                 "python -c \"import clip; clip.load('ViT-L/14@336px', device='cpu')\" before running offline")

SPEC = UpstreamSpec(
    name="video2music", title="Video2Music", repo="AMAAI-Lab/Video2Music",
    commit="0ba435602c42308da3da1de1b74c8ea599fa5472", licence="MIT", output="midi", entry_point="video2music.py",
    environment="python 3.8, torch 1.12.1, torchvision 0.13.1, openai CLIP, scenedetect 0.6.1, moviepy 1.0.3, "
                "MIDIUtil, midi2audio, music21, gradio and pytube (imported at module level); ffmpeg and fluidsynth "
                "binaries (upstream README, requirements.txt)",
    checkpoints=(CheckpointSpec(
        "amt", "AMT chord transformer and Bi-GRU regression weights (upstream's saved_models/AMT folder)",
        "download AMT.zip from Google Drive (id 1qpcBXF04pgdy9hqRexr0mTx7L9_CAFpt, upstream README 'Installation') and "
        "extract best_loss_weights.pickle and best_rmse_weights.pickle into one folder (upstream puts them in "
        f"<checkout>/saved_models/AMT); also: {CLIP_PRECACHE}",
        kind="dir", files=("best_loss_weights.pickle", "best_rmse_weights.pickle")),),
    sample_rate=None, max_duration_s=300.0, min_midi_coverage=0.5,
    notes=(CLIP_PRECACHE,
           "runs upstream's Python API (no CLI for new videos) through baselines/external/wrappers/"
           "video2music_generate.py in a private folder per clip (upstream deletes ./feature and ./output)",
           "upstream always writes 300 chords of 1 s (120 BPM) and looks at the first 300 s of video only; the MIDI "
           "is cut to the clip before rendering",
           "upstream's preview render (output.flac/.mp4) uses vm-eval's SoundFont and is discarded: "
           "soundfonts/default_sound_font.sf2 need not be downloaded",
           "piano (no program change), arpeggio density and velocity from upstream's regression model"),
)

_FLAT_TO_SHARP = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#"}  # video2music.py:73-79
_SUFFIXES = {"m": "min", "m6": "min6", "m7": "min7", "M6": "maj6", "M7": "maj7"}  # video2music.py:502-511


def upstream_chord_name(symbol: str) -> str:
    """The chord.json key upstream looks a primer chord up by (video2music.py:486-511); KeyError where it would."""
    if len(symbol) <= 1:
        return symbol
    if symbol[1] == "b":
        symbol = _FLAT_TO_SHARP[symbol[:2]] + symbol[2:]
    cut = 2 if symbol[1] == "#" else 1
    root, suffix = symbol[:cut], symbol[cut:]
    if suffix == "":
        return root
    return f"{root}:{_SUFFIXES.get(suffix, suffix)}"


def check_primer(primer: str, checkout: Path) -> None:
    """Raise ValueError for a primer upstream would fail on (KeyError); skipped if chord.json cannot be read."""
    try:
        vocabulary = set(json.loads((checkout / "dataset" / "vevo_meta" / "chord.json").read_text()))
    except (OSError, ValueError):
        return
    bad = []
    for symbol in primer.split():
        try:
            if upstream_chord_name(symbol) not in vocabulary:
                bad.append(symbol)
        except KeyError:
            bad.append(symbol)
    if bad:
        raise ValueError(f"Video2Music primer {primer!r}: upstream has no chord {', '.join(map(repr, bad))} (symbols "
                         "like C, Am, F#m7, BbM7, Ebdim, Gsus4, E7; see dataset/vevo_meta/chord.json)")


def truncate_midi(src: Path, dst: Path, end_s: float) -> Path:
    """Copy `src` without anything after `end_s` seconds; notes sounding at the cut end there.

    Events before the cut are unchanged, so a render of the copy equals a render of the whole file up to `end_s`.
    """
    import mido

    mid = mido.MidiFile(str(src))
    tpb = mid.ticks_per_beat
    cut_tick, tick, seconds, tempo = None, 0, 0.0, 500000
    for msg in mido.merge_tracks(mid.tracks):  # the tempo map of all tracks, in order
        step = mido.tick2second(msg.time, tpb, tempo)
        if seconds + step >= end_s:
            cut_tick = tick + int(mido.second2tick(end_s - seconds, tpb, tempo))
            break
        seconds, tick = seconds + step, tick + msg.time
        if msg.type == "set_tempo":
            tempo = msg.tempo
    out = mido.MidiFile(type=mid.type, ticks_per_beat=tpb)
    for track in mid.tracks:
        new, now, last, sounding = mido.MidiTrack(), 0, 0, {}
        for msg in track:
            now += msg.time
            if msg.type == "end_of_track":
                continue
            if cut_tick is not None and now >= cut_tick:
                break
            new.append(msg.copy(time=now - last))
            last = now
            if msg.type == "note_on" and msg.velocity > 0:
                sounding[(msg.channel, msg.note)] = sounding.get((msg.channel, msg.note), 0) + 1
            elif msg.type in ("note_off", "note_on") and sounding.get((msg.channel, msg.note)):
                sounding[(msg.channel, msg.note)] -= 1
        end = cut_tick if cut_tick is not None else now
        for (channel, note), count in sorted(sounding.items()):
            for _ in range(count):
                new.append(mido.Message("note_off", channel=channel, note=note, velocity=0, time=max(0, end - last)))
                last = max(last, end)
        new.append(mido.MetaMessage("end_of_track", time=max(0, end - last)))
        out.tracks.append(new)
    dst.parent.mkdir(parents=True, exist_ok=True)
    out.save(str(dst))
    return dst


class Video2Music(ExternalSystem):
    """Options: primer (space-separated chord symbols, "" = C or Am by key) and key (one of upstream's 24),
    defaulting to upstream's README example "C Am F G" / "C major"."""

    spec = SPEC

    def __init__(self, primer: str = "C Am F G", key: str = "C major", **kwargs) -> None:
        super().__init__(**kwargs)
        if key not in KEYS:
            raise ValueError(f"Video2Music key {key!r} is not one of upstream's: {', '.join(KEYS)}")
        if not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"Video2Music runs on 'cpu' or 'cuda[:N]', not {self.device!r}")
        check_primer(primer, self.config.checkout)
        self.primer, self.key = " ".join(primer.split()), key
        self.info.extra.update(primer=self.primer, key=self.key,
                               midi="300 chords of 1 s at 120 BPM from upstream, cut to the clip before rendering")

    def generate_clip(self, clip, work: Path):
        self.start_log(clip)
        video = self.stage_video(clip, work / "in")
        stem = safe_stem(clip.id)
        raw, cut = work / "out" / f"{stem}.mid", work / "out" / f"{stem}-clip.mid"
        args = ["--checkout", self.config.checkout, "--weights", self.config.checkpoints["amt"],
                "--soundfont", self.config.soundfont, "--video", video, "--out", raw, "--seed", clip.seed,
                "--primer", self.primer, "--key", self.key,
                "--device", "cuda" if self.device.startswith("cuda") else "cpu"]
        # cwd: a private folder the wrapper fills with upstream's relative layout (see the module docstring)
        self.run(clip, [str(self.config.python), str(WRAPPER), *map(str, args)], cwd=work / "run",
                 env=self.device_env())
        try:
            midi = truncate_midi(raw, cut, clip.duration_s + TAIL_S)
        except Exception:  # missing or broken: collect_midi names the problem
            midi = raw
        return self.collect_midi(clip, midi, work)
