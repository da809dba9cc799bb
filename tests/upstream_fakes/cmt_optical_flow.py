"""Fake of CMT's src/video2npz/optical_flow.py at 78eb9a58 (tests only): same arguments, cwd-relative folders,
flow cache keyed by the name up to its first dot. Made-up magnitudes stand in for Farneback flow
(one per pair of consecutive frames).

FAKE_CMT_FAIL_STEP=optical_flow: traceback + exit 1; FAKE_CMT_SILENT_STEP=optical_flow: exit 0, nothing written.
"""
import argparse
import os

import numpy as np

import fakelib


def makedirs(dirs):
    for d in dirs:
        if not os.path.exists(d):
            os.makedirs(d)


video_dir = '../../videos/'
flow_dir = 'flow/'
fig_dir = 'fig/'
makedirs([video_dir, flow_dir, fig_dir, 'optical_flow/'])


def video_facts(path):
    import av

    with av.open(path) as c:
        s = c.streams.video[0]
        return s.frames, s.codec_context.height


def dense_optical_flow(video_path):
    assert os.path.exists(video_path)
    cache = os.path.join(flow_dir, os.path.basename(video_path).split('.')[0] + '.npz')
    if os.path.exists(cache):  # upstream reuses a flow file of the same name, whatever video it came from
        return list(np.load(cache)['flow'])
    n_frames, height = video_facts(video_path)
    # upstream's README resizes every video to 360p first; flow magnitudes (pixels) depend on it
    assert height == 360, "video is %d px high, not 360" % height
    flow = [float(1 + (i * 7919) % 13) for i in range(1, n_frames)]  # one value per pair of frames
    np.savez(cache, flow=np.asarray(flow))
    return flow


if __name__ == '__main__':
    parser = argparse.ArgumentParser()
    parser.add_argument("--method", choices=["farneback", "lucaskanade_dense", "rlof"], default="farneback")
    parser.add_argument("--video", default="../../videos/final_640.mp4")
    args = parser.parse_args()
    fakelib.step_modes("optical_flow", "AssertionError (fake optical_flow)")
    flow = dense_optical_flow(args.video)
    stem = os.path.basename(args.video).split('.')[0]
    open(os.path.join(fig_dir, stem + '.jpg'), 'wb').close()
    np.savez('optical_flow/flow.npz', flow=np.asarray(flow))
