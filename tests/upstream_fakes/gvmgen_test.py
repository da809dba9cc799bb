"""Fake of GVMGen's test.py at 5d0c6c6c (tests only): same arguments, frame sampling, fixed output names.

test.py: loads `--model_path` (a folder: state_dict.bin + compression_state_dict.bin), samples frames with OpenCV
(keeps frame i when i % int(int(video fps) / --fps) == 0, at most --duration frames; ValueError if --fps > fps),
generates one second per kept frame at 32 kHz mono, writes ./0.wav in the working directory, trims it to the video
duration, muxes it with moviepy (AAC, 44.1 kHz stereo, temp-audio.m4a in the working directory) into
<syn_path>/0.mp4 -- printing, not raising, any muxing error -- and deletes 0.wav.
FAKE_UPSTREAM_MODE: nooutput = the swallowed muxing error (exit 0, no 0.mp4); garbage = an undecodable 0.mp4;
wrongsr = an AAC track at 22050 Hz; short / exit / hang as in fakelib.
"""
import argparse
import os

import av
import numpy as np
import soundfile as sf

import fakelib

parser = argparse.ArgumentParser(description="Script for processing video and model paths.")
parser.add_argument("--model_path", type=str, default="./checkpoints", help="Path to the model checkpoint.")
parser.add_argument("--video_path", type=str, required=True, help="Path to the input video file.")
parser.add_argument("--syn_path", type=str, required=True, help="Path to the synthesis output directory.")
parser.add_argument("--fps", type=int, default=1, help="video sample rate.")
parser.add_argument("--duration", type=int, default=30, help="video length.")
args = parser.parse_args()

for f in ("state_dict.bin", "compression_state_dict.bin"):  # loaders.py:71,87 with a folder
    assert os.path.isfile(os.path.join(args.model_path, f)), f
checkout = os.path.dirname(os.path.abspath(__file__))
assert os.path.realpath(os.getcwd()) != os.path.realpath(checkout), "fixed names would land in the checkout"
assert 1 <= args.duration <= 30 and args.fps == 1, (args.fps, args.duration)  # what the adapter must pass

with av.open(args.video_path) as c:  # capture_video (data_preprocess/utils/video.py:32-63)
    vs = c.streams.video[0]
    fps = int(float(vs.average_rate or 0))
    total = sum(1 for _ in c.decode(vs))
if args.fps > fps:
    raise ValueError("frame_per_second > fps:{}".format(fps))
kept = min(args.duration, len(range(0, total, int(fps / args.fps))))
print("fake test.py: %d of %d frames kept -> %d s of music" % (kept, total, kept))

mode = fakelib.before_output()
fakelib.write_audio("0.wav", kept, 32000, 1)  # audio_write('0', ...) -> ./0.wav (short / wrongsr / garbage)
video_s = fakelib.video_duration(args.video_path)
out = os.path.join(args.syn_path, "0.mp4")
try:
    if mode == "nooutput":
        raise OSError("[Errno 32] Broken pipe (fake MoviePy error: FFMPEG encountered the following error)")
    if mode == "garbage":
        with open(out, "wb") as f:
            f.write(b"\x00\x00\x00\x18ftypmp42 not really a video")
    else:
        wav, sr = sf.read("0.wav", dtype="float32")
        wav = wav[: int(video_s * 1000) * sr // 1000]  # pydub: audio_clip[0:int(video_mp.duration*1000)]
        rate = 22050 if mode == "wrongsr" else 44100  # moviepy AudioFileClip / write_videofile defaults
        n = int(round(len(wav) * rate / sr))
        x = np.interp(np.arange(n) * sr / rate, np.arange(len(wav)), wav).astype(np.float32)
        stereo = np.ascontiguousarray(np.stack([x, x]))
        if not os.path.isdir(args.syn_path):
            raise OSError("[Errno 2] No such file or directory: %r" % out)
        with open("temp-audio.m4a", "wb") as f:
            f.write(b"fake")
        with av.open(args.video_path) as src, av.open(out, "w", format="mp4") as dst:
            vin = src.streams.video[0]
            vout = dst.add_stream_from_template(vin)
            ast = dst.add_stream("aac", rate=rate, layout="stereo")
            for pkt in src.demux(vin):
                if pkt.dts is None:
                    continue
                pkt.stream = vout
                dst.mux(pkt)
            for i in range(0, n, 1024):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(stereo[:, i:i + 1024]), format="fltp",
                                                   layout="stereo")
                frame.sample_rate, frame.pts = rate, i
                for pkt in ast.encode(frame):
                    dst.mux(pkt)
            for pkt in ast.encode(None):
                dst.mux(pkt)
        os.remove("temp-audio.m4a")
except Exception as e:
    print(f"error：{e}")
if os.path.exists("0.wav"):  # upstream: os.remove('0.wav')
    os.remove("0.wav")
