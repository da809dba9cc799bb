"""Fake of Diff-BGM's diffbgm/inference_sdf.py at c5a0e8a2 (tests only): same arguments, cwd-relative inputs and
outputs, the loop over split[1][0..49] skipping 29, the bare `except: continue` around data loading (exit 0
without output), one output per song at exp/visual+caption_mask2/<idx>.mid (16 s per 8-bar segment at 120 BPM,
the folder is not created), seeding from --seed (numpy refuses seeds >= 2**32, as upstream's np.random.seed does).
"""
import json
import os
import pickle
import random
from argparse import ArgumentParser
from os.path import join
from pathlib import Path

import numpy as np

import fakelib
from dirs import *  # noqa: F401,F403  import-time mkdir of ./demo and ./result/symmv, as upstream

SEG_LGTH_BIN = 128


def choose_song_from_val_dl(ind=-1, data_type=None):
    split_fpath = join(TRAIN_SPLIT_DIR, "pop909_new.pickle")
    with open(split_fpath, "rb") as f:
        split = pickle.load(f)
    song_fn = split[1][ind]
    song_idx = song_fn[:song_fn.find(".")]
    data = np.load(os.path.join(POP909_DATA_DIR, song_fn), allow_pickle=True)
    db_pos = data["db_pos"][data["db_pos_filter"]]
    chord = data["chord"].astype(np.int32)
    with open(f'./data/bgm909/new_raw_video_feats/{song_idx}.pth', "rb") as f:  # torch.load
        assert f.read(4) == b"PTH!", "not a tensor file"
    caption = np.load(f'./data/bgm909/caption_feats/{song_idx}.npy')
    assert caption.ndim == 2 and caption.shape[1] == 768 and chord.shape[1] == 14
    with open(f"./data/bgm909/detection/{song_idx}_scenes.txt", "r") as f:
        f.read()
    n_seg, i, idx = 0, 0, 0  # get_whole_song_data: non-overlapping 8-bar segments
    while i < len(db_pos):
        n_seg += 1
        idx += SEG_LGTH_BIN
        while i < len(db_pos) and db_pos[i] < idx:
            i += 1
    for name in ("prmat2c", "pnotree", "chord"):  # get_data_preprocessed: exp/ must exist
        open(f"exp/{data_type}_{name}.mid", "wb").close()
    return n_seg, song_fn


if __name__ == "__main__":
    parser = ArgumentParser(description='inference a diffbgm model')
    parser.add_argument("--model_dir")
    parser.add_argument("--uncond_scale", default=1.)
    parser.add_argument("--seed")
    parser.add_argument("--autoreg", action="store_true")
    parser.add_argument("--from_dataset", default="pop909")
    parser.add_argument("--length", default=0)
    parser.add_argument("--chkpt_name", default="weights_best.pt")
    args = parser.parse_args()
    model_label = Path(args.model_dir).parent.name
    if args.seed is not None:
        SEED = int(args.seed)
        np.random.seed(SEED)
        random.seed(SEED)
    with open(f"{args.model_dir}/params.json", "r") as params_file:
        params = json.load(params_file)
    for ind in range(50):
        if ind == 29:
            continue
        try:
            n_seg, song_fn = choose_song_from_val_dl(ind, "cond")
            song_idx = song_fn[:song_fn.find(".")]
        except:  # noqa: E722  upstream's bare except
            continue
        with open(f"{args.model_dir}/chkpts/{args.chkpt_name}", "rb") as f:  # torch.load
            f.read(1)
        fakelib.before_output()
        scale = float(args.uncond_scale)
        out = f"exp/visual+caption_mask2/{song_idx}.mid"
        if not os.path.isdir(os.path.dirname(out)):  # pretty_midi.write does not create folders
            raise FileNotFoundError(out)
        fakelib.write_midi(out, n_seg * 16.0, tempo_bpm=120)
        for s1 in (900, 100, 25):  # denoising snapshots, overwritten per song
            open(f"exp/{s1}.mid", "wb").close()
