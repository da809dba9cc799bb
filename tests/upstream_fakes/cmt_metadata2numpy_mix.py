"""Fake of CMT's src/video2npz/metadata2numpy_mix.py at 78eb9a58 (tests only): same arguments and token layout
(N, 6) int rows [beat, density, strength, i_beat, n_beat, p_beat]; one Bar token per flow_magnitude_per_bar
entry. Word ids are the fake's own (Bar = 17, Beat_k = k + 1).

FAKE_CMT_FAIL_STEP=metadata2numpy: traceback + exit 1; FAKE_CMT_SILENT_STEP=metadata2numpy: exit 0, no npz.
"""
import argparse
import json
import math
import os

import numpy as np

import fakelib

RESOLUTION = 16
BAR = 17


def metadata2numpy(metadata):
    vbeats = metadata['vbeats']
    fmpb = metadata['flow_magnitude_per_bar']
    n_beat = int(math.ceil(float(metadata['duration']) / 60 * float(metadata['tempo']) * 4))
    rows, n_bars = [], 0

    def bar(i):
        i_beat = i * RESOLUTION
        return [BAR, 1 + min(8, int(fmpb[i])), 0, i_beat, n_beat, round(float(i_beat) / n_beat * 100) + 1]

    for vbeat in vbeats:
        while int(vbeat['bar']) >= n_bars:
            rows.append(bar(n_bars))
            n_bars += 1
        i_beat = int(vbeat['bar']) * RESOLUTION + int(vbeat['tick'])
        rows.append([int(vbeat['tick']) + 1, 0, 2, i_beat, n_beat, round(float(i_beat) / n_beat * 100) + 1])
    while n_bars < len(fmpb):
        rows.append(bar(n_bars))
        n_bars += 1
    return np.asarray(rows, dtype=int)


if __name__ == '__main__':
    parser = argparse.ArgumentParser()
    parser.add_argument('--out_dir', default="../../inference/")
    parser.add_argument('--video', default="final_640.mp4")
    parser.add_argument('--metadata', default="metadata.json")
    args = parser.parse_args()
    fakelib.step_modes("metadata2numpy", "KeyError: 'tempo' (fake metadata2numpy)")
    video_name = os.path.basename(args.video)
    with open(args.metadata) as f:
        metadata = json.load(f)
    target_path = os.path.join(args.out_dir, video_name.replace('.mp4', '.npz'))
    np.savez(target_path, input=metadata2numpy(metadata))
    print("saved to " + str(target_path))
