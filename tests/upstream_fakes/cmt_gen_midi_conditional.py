"""Fake of CMT's src/gen_midi_conditional.py at 78eb9a58 (tests only): same arguments (-c, -f glob, -g numeric,
-n), same failures (missing checkpoint, empty glob AFTER the model is loaded), writes <npz>_<i>.mid with no tempo
event (players assume 120 BPM): 4 beats per Bar token of the npz, notes from numpy's global generator.
"""
import argparse
import glob
import os

import numpy as np

import fakelib

BAR = 17  # the fake word id of Bar tokens (cmt_metadata2numpy_mix.py)

parser = argparse.ArgumentParser(description="Args for generating background music")
parser.add_argument('-c', '--ckpt', default="../exp/loss_8_params.pt", help="Model checkpoint to be loaded")
parser.add_argument('-f', '--files', required=True, help="Input npz file of a video")
parser.add_argument('-g', '--gpus', help="Id of gpu. Only ONE gpu is needed")
parser.add_argument('-n', '--num_songs', default=1, help="Number of generated songs")
args = parser.parse_args()
num_songs = int(args.num_songs)
if args.gpus is not None:
    if not args.gpus.isnumeric():
        raise RuntimeError('Only 1 GPU is needed for inference')
    os.environ['CUDA_VISIBLE_DEVICES'] = args.gpus
else:
    os.environ['CUDA_VISIBLE_DEVICES'] = '0'
assert args.gpus is not None, "the adapter must pass -g (upstream overrides CUDA_VISIBLE_DEVICES otherwise)"
filelist = glob.glob(args.files)
with open(args.ckpt, "rb") as f:  # torch.load
    f.read(1)
if len(filelist) == 0:
    raise RuntimeError('no npz file in ' + str(filelist))
for file_name in filelist:
    for sidx in range(num_songs):
        vlog_npz = np.load(file_name)['input']
        vlog_npz = vlog_npz[vlog_npz[:, 2] != 1]
        n_bars = int(np.sum(vlog_npz[:, 0] == BAR))
        fakelib.before_output()
        fakelib.write_midi(f"{file_name}_{sidx}.mid", n_bars * 2.0)  # 4 beats per bar at 120 BPM
