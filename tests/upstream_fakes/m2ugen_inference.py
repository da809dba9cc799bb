"""Fake of M2UGen's M2UGen/inference.py at 2c702a48 (tests only): same arguments and defaults, the same frame
window and ffprobe length behaviour, same output (temp/<random>.wav under the CWD, named only on stdout), same exit-0-without-audio.

FAKE_M2UGEN_STDOUT (fake only): "quiet" omits the "Generated Audio:" line; "decoy" first writes a second,
unreported 22050 Hz wav under temp/.
"""
import argparse
import os
import subprocess
import tempfile

import numpy as np

import fakelib

parser = argparse.ArgumentParser()
parser.add_argument("--model", default="./ckpts/checkpoint.pth", type=str)
parser.add_argument("--llama_type", default="7B", type=str)
parser.add_argument("--llama_dir", default="/path/to/llama", type=str)
parser.add_argument("--mert_path", default="m-a-p/MERT-v1-330M", type=str)
parser.add_argument("--vit_path", default="m-a-p/MERT-v1-330M", type=str)
parser.add_argument("--vivit_path", default="m-a-p/MERT-v1-330M", type=str)
parser.add_argument("--knn_dir", default="./ckpts", type=str)
parser.add_argument("--music_decoder", default="musicgen", type=str)
parser.add_argument("--music_decoder_path", default="facebook/musicgen-medium", type=str)
parser.add_argument("--prompt", default="Generate a music", type=str)
parser.add_argument("--audio_file", default=None, type=str)
parser.add_argument("--image_file", default=None, type=str)
parser.add_argument("--video_file", default=None, type=str)
args = parser.parse_args()

# What the real script would need from the adapter (m2ugen.py:46-149, 227-228; inference.py:78-94).
assert os.path.isfile(args.model), args.model
assert os.path.isfile(os.path.join(args.llama_dir, args.llama_type, "params.json")), args.llama_dir
assert os.path.isfile(os.path.join(args.llama_dir, "tokenizer.model")), args.llama_dir
for folder in (args.mert_path, args.vit_path, args.vivit_path, args.music_decoder_path):
    assert os.path.isfile(os.path.join(folder, "config.json")), folder  # the defaults are hub ids (MERT for ViT!)
assert os.path.isfile(os.path.join(args.mert_path, "modeling_MERT.py")), args.mert_path
assert args.vit_path != args.mert_path and args.vivit_path != args.mert_path
assert args.music_decoder == "musicgen" and args.llama_type == "7B"
assert args.audio_file is None and args.image_file is None
assert args.video_file and os.path.isfile(args.video_file), args.video_file
assert args.prompt.strip()
print("Loading Model Checkpoint")


def frame_window(n_frames, seg_len):
    """Behaviour of inference.py:198-206 (clip_len 32, frame_sample_rate 1): n_frames indices ending at a frame
    drawn with numpy's global randint; a video shorter than the window collapses it to one repeated frame."""
    span = n_frames if n_frames <= seg_len else 0
    end = np.random.randint(span, seg_len)
    return np.clip(np.linspace(end - span, end, num=n_frames), end - span, end - 1).astype(np.int64)


def video_seconds(path):
    """Behaviour of inference.py:209-215: the container duration from ffprobe, rounded to whole seconds."""
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
                         capture_output=True, text=True).stdout
    return int(round(float(out)))


def save_audio_to_local(seconds):  # inference.py:145-155: temp/ under the CWD, a name nobody can predict
    if not os.path.exists("temp"):
        os.mkdir("temp")
    filename = os.path.join("temp", next(tempfile._get_candidate_names()) + ".wav")
    fakelib.write_audio(filename, seconds, 32000, 1, subtype="FLOAT")  # scipy writes the float32 array as is
    return filename


import av  # noqa: E402

container = av.open(args.video_file)
indices = frame_window(32, container.streams.video[0].frames)
print(f"[fake] frame window {indices[0]}-{indices[-1]}")
length = video_seconds(args.video_file)
print(f"Video Length: {length}")
fakelib.before_output()

print(f"Q. {args.prompt}")
if fakelib.mode() == "nooutput":  # the LLM did not emit all 8 [AUD] tokens: text only, nothing written, exit 0
    print("A. Here is a calm piano piece for the video.")
    raise SystemExit(0)
if os.environ.get("FAKE_M2UGEN_STDOUT") == "decoy":
    os.makedirs("temp", exist_ok=True)
    fakelib.write_audio(os.path.join("temp", "decoy.wav"), 1.0, 22050, 1)
filename = save_audio_to_local((int(256 / 5 * length) - 3) / 50)  # MusicGen: int(51.2 L) tokens - 3 delay frames
print("A. Here is a music that is calm and bright. [AUD0][AUD1][AUD2][AUD3][AUD4][AUD5][AUD6][AUD7]")
if os.environ.get("FAKE_M2UGEN_STDOUT") != "quiet":
    print(f"Generated Audio: {filename}")
