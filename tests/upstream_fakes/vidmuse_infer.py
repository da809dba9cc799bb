"""Fake of VidMuse's infer.py at 1e9296e7 (tests only): same arguments, outputs and skip rule."""
import argparse
import glob
import os

import fakelib

p = argparse.ArgumentParser()
p.add_argument("--model_path", type=str, required=True)
p.add_argument("--video_dir", type=str, required=True)
p.add_argument("--output_dir", type=str, required=True)
p.add_argument("--topk", type=int, default=250)
p.add_argument("--topp", type=float, default=0.0)
p.add_argument("--temperature", type=float, default=1.0)
p.add_argument("--cfg_coef", type=float, default=3.0)
a = p.parse_args()
for f in ("state_dict.bin", "compression_state_dict.bin"):
    assert os.path.isfile(os.path.join(a.model_path, f)), f
assert os.path.isdir(os.environ["TMPDIR"])
os.makedirs(a.output_dir, exist_ok=True)
for video in glob.glob(os.path.join(a.video_dir, "*.mp4")):
    stem = os.path.splitext(os.path.basename(video))[0]
    wav = os.path.join(a.output_dir, stem + "_output.wav")
    if os.path.exists(wav):
        continue
    fakelib.before_output(stem)
    fakelib.write_audio(wav, int(fakelib.video_duration(video)), 32000, 1)  # upstream: int(seconds), floored
    open(os.path.join(a.output_dir, stem + "_output.mp4"), "wb").close()
