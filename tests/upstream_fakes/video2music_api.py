"""Fake of Video2Music's video2music.py at 0ba43560 (tests only): the `Video2music` API, its relative paths, outputs.

Mirrors what the wrapper relies on: `Video2music(device=...)` loads saved_models/AMT/*.pickle relative to the
working directory; `generate(video, primer, key)` deletes and recreates ./feature and ./output, puts `video`
unquoted into a shell command, looks primer chords up in dataset/vevo_meta/chord.json (KeyError), needs a key with
"major"/"minor" in traspose_key_dic (UnboundLocalError / KeyError), builds tensors on utilities.device.get_device()
(a CUDA model with USE_CUDA False is a device mismatch), writes output/output.mid (300 chords of 1 s at 120 BPM
whatever the video length), renders output.flac with soundfonts/default_sound_font.sf2, muxes output.mp4 via
temp-audio.m4a, and returns Path("output/output.mp4").
"""
import json
import os
import shutil
from pathlib import Path

import fakelib
from utilities.device import get_device

traspose_key_dic = {
    "F major": -7, "Gb major": -6, "G major": -5, "Ab major": -4, "A major": -3, "Bb major": -2, "B major": -1,
    "C major": 0, "Db major": 1, "D major": 2, "Eb major": 3, "E major": 4, "D minor": -7, "Eb minor": -6,
    "E minor": -5, "F minor": -4, "F# minor": -3, "G minor": -2, "G# minor": -1, "A minor": 0, "Bb minor": 1,
    "B minor": 2, "C minor": 3, "C# minor": 4,
}
flatsharpDic = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#"}
N_CHORDS = 300  # target_seq_length; CHORD_END is never sampled, so always 300


class Video2music:
    def __init__(self, name="amaai-lab/video2music", device="cuda:0", cache_dir=None, local_files_only=False):
        self.device = device
        for weights in ("saved_models/AMT/best_loss_weights.pickle", "saved_models/AMT/best_rmse_weights.pickle"):
            with open(weights, "rb"):  # torch.load(relative path, map_location=device)
                pass
        if str(device).startswith("cuda") and os.environ.get("CUDA_VISIBLE_DEVICES") == "":
            raise RuntimeError("No CUDA GPUs are available (fake)")
        self.SF2_FILE = "soundfonts/default_sound_font.sf2"
        print("fake Video2music(device=%r), CUDA_VISIBLE_DEVICES=%r" % (device, os.environ.get("CUDA_VISIBLE_DEVICES")))

    def generate(self, video, primer, key):
        for d in ("./feature", "./output"):
            if os.path.exists(d):
                shutil.rmtree(d)
            os.makedirs(d)
        if any(c in video for c in " \t'\"$;&|()"):  # ffmpeg -i {video} in a shell (video2music.py:94)
            raise IndexError("list index out of range (fake: ffmpeg got a broken path, no frames were extracted)")
        if not os.path.isfile(video):
            raise IndexError("list index out of range (fake: ffmpeg found no %s)" % video)
        fakelib.before_output()
        if str(self.device).startswith("cuda") != str(get_device()).startswith("cuda"):
            raise RuntimeError("Expected all tensors to be on the same device, but found at least two devices, "
                               "%s and %s! (fake)" % (self.device, get_device()))
        if "major" in key:
            feature_key = 0
        elif "minor" in key:
            feature_key = 1
        with open("dataset/vevo_meta/chord.json") as f:
            chordDic = json.load(f)
        primer = primer.strip() or ("C" if feature_key == 0 else "Am")
        for pChord in primer.split():
            if len(pChord) > 1:
                if pChord[1] == "b":
                    pChord = flatsharpDic[pChord[0:2]] + pChord[2:]
                type_idx = 2 if pChord[1] == "#" else 1
                pChord = pChord[0:type_idx] + ":" + pChord[type_idx:]
                suffix = pChord[type_idx + 1:]
                names = {"m": ":min", "m6": ":min6", "m7": ":min7", "M6": ":maj6", "M7": ":maj7", "": ""}
                if suffix in names:
                    pChord = pChord[0:type_idx] + names[suffix]
            chordDic[pChord]
        traspose_key_dic[key]
        seconds = N_CHORDS if fakelib.mode() != "short" else fakelib.video_duration(video)
        fakelib.write_midi("output/output.mid", seconds, tempo_bpm=120)
        with open(self.SF2_FILE, "rb"):  # midi2audio FluidSynth(sound_font=...)
            pass
        if os.path.exists("output/output.mid"):
            Path("output/output.flac").write_bytes(b"fLaC fake")
            Path("temp-audio.m4a").write_bytes(b"fake")
            os.remove("temp-audio.m4a")
            Path("output/output.mp4").write_bytes(b"fake")
        return Path("output/output.mp4")
