"""Fake of CMT's src/video2npz/video2metadata.py at 78eb9a58 (tests only): same arguments, ./VisBeatAssets cache
keyed by the video's name, flow read from "flow/" + name.replace('.mp4', '.npz'), ./metadata.json with duration,
tempo, vbeats and flow_magnitude_per_bar. The "visual tempo" is $FAKE_CMT_TEMPO (default 90 BPM), a visual beat
on every beat.

FAKE_CMT_FAIL_STEP=video2metadata: traceback + exit 1; FAKE_CMT_SILENT_STEP=video2metadata: exit 0, no metadata.
"""
import argparse
import json
import os
import os.path as osp

import numpy as np

import fakelib


def makedirs(d):
    if not osp.exists(d):
        os.makedirs(d)


def pull_video(name, source_location):
    """visbeat3.PullVideo: ./VisBeatAssets/VideoSources/<name>/ is reused when name and source match."""
    import av

    folder = osp.join('.', 'VisBeatAssets', 'VideoSources', name)
    info = osp.join(folder, 'info.json')
    if osp.exists(info):
        with open(info) as f:
            cached = json.load(f)
        if cached['source_location'] == source_location:
            return cached
    with av.open(source_location) as c:
        s = c.streams.video[0]
        n_frames = s.frames
        duration = float(s.duration * s.time_base)
    makedirs(folder)
    cached = {'source_location': source_location, 'n_frames': n_frames, 'duration': duration}
    with open(info, 'w') as f:
        json.dump(cached, f)
    return cached


def process_video(video_path, args):
    video = os.path.basename(video_path)
    vlog = pull_video(video, osp.join(video_path))
    tempo = float(os.environ.get("FAKE_CMT_TEMPO", "90"))
    vbeats_list = []
    t = 0.0
    while t < vlog['duration']:
        i_beat = round(t / 60 * tempo * 4)
        vbeat = {'start_time': t, 'bar': int(i_beat // 16), 'tick': int(i_beat % 16), 'weight': 0.5}
        if vbeat['tick'] % args.resolution == 0:
            vbeats_list.append(vbeat)
        t += 60.0 / tempo
    npz = np.load("flow/" + video.replace('.mp4', '.npz'), allow_pickle=True)
    flow_magnitude_list = npz['flow']
    fps = round(vlog['n_frames'] / float(vlog['duration']))
    fpb = int(round(fps * 4 * 60 / tempo))
    fmpb = [float(np.mean(flow_magnitude_list[i: min(i + fpb, len(flow_magnitude_list))]))
            for i in range(0, len(flow_magnitude_list), fpb)]
    if args.visualize:
        makedirs('image')
    return {'duration': vlog['duration'], 'tempo': tempo, 'vbeats': vbeats_list, 'flow_magnitude_per_bar': fmpb}


if __name__ == '__main__':
    parser = argparse.ArgumentParser()
    parser.add_argument('--video', type=str, default='../../videos/final_640.mp4')
    parser.add_argument('--visualize', action='store_true', default=True)
    parser.add_argument('--resolution', type=int, default=1)
    args = parser.parse_args()
    fakelib.step_modes("video2metadata", "OSError: ffmpeg failed (fake video2metadata)")
    metadata = process_video(args.video, args)
    with open("metadata.json", "w") as f:
        json.dump(metadata, f)
    print("saved to metadata.json")
