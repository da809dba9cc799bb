"""Diff-BGM (Li et al., CVPR 2024): latent diffusion of piano rolls conditioned on video and caption features.

What upstream can do, honestly: its only inference entry point (``diffbgm/inference_sdf.py``, README "Inference":
"generate music for videos in BGM909") generates for the songs of its BGM909 split from PRECOMPUTED features.
The repository ships no feature extractor: the video features (CLIP2Video), captions (BLIP) encoded with
bert-base-uncased and the shot files (TransNetV2) were computed outside it, with settings it does not state, and
every song also needs its POP909-format npz (ground-truth music of the paired song), which fixes the time grid.
So this adapter runs a clip only when BGM909's files for its song exist::

    <data>/POP909_4_bin_pnt_8bar/<id>.npz
    <data>/bgm909/new_raw_video_feats/<id>.pth
    <data>/bgm909/caption_feats/<id>.npy
    <data>/bgm909/detection/<id>_scenes.txt

(``<data>`` = ``<checkout>/data`` unless ``data_dir=`` says otherwise). The song id is the stem of the clip's
source video file (``id_from="video-stem"``, e.g. ``videos/001.mp4`` -> ``001``) or the clip id
(``id_from="clip-id"``). Every other clip is NotApplicable, naming the files looked for. Fabricating features for
other videos (placeholder music, features from guessed extractor settings) would not be Diff-BGM.

One clip = one upstream process:
- A private working tree in the clip's work folder, because upstream reads and writes everything relative to its
  working directory (dirs.py: ``data/...``, ``./demo``, ``./result/symmv``; dataset.py: ``./data/bgm909/...``;
  inference: ``exp/...``) and imports its modules from the script's folder: symlinks to the checkout's top-level
  entries (``diffbgm/`` etc.), ``data/`` holding symlinks to exactly the song's four files plus its own
  ``data/train_split_pnt/pop909_new.pickle``, and its own ``exp/visual+caption_mask2/`` (upstream does not create
  it) and ``result/``. Nothing is written into the checkout's data/ or exp/; concurrent or earlier runs cannot
  collide, so no lock is needed.
- The split pickle is ``([], ["<id>.npz"])`` (protocol 4): upstream reads ``split[1][ind]`` for ind in 0..49
  except 29; the song sits at index 0, the other indices fail inside upstream's bare except and are skipped.
- ``python diffbgm/inference_sdf.py --model_dir M --uncond_scale 5.0 --seed <clip seed mod 2**32>`` (upstream
  seeds torch, numpy and random itself; numpy needs the seed below 2**32).
- Upstream swallows data-loading errors (``try: ... except: continue``) and exits 0: a missing
  ``exp/visual+caption_mask2/<id>.mid`` after exit 0 fails the clip saying so.
- Upstream writes one piano track at 120 BPM, 1/8 s per step, 16 s per 8-bar segment, for the WHOLE song. Its
  timeline is taken as the video's, as upstream's own demo does when it muxes the render onto the video (README
  "Make a Demo"): the clip's span [start, end] of its source video is cut out of it (:func:`midi_window`) before
  FluidSynth renders it; the render is then trimmed / padded to the clip.
- Upstream's ``--length`` would cut the conditioning to the first N segments, but slices the (caption, visual)
  tuple of the released c_v model instead of the tensors, so it is not used: the whole song is generated.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path

from baselines.external.adapter import CheckpointSpec, ExternalSystem, UpstreamSpec
from baselines.external.midi import midi_duration_s
from baselines.external.process import UpstreamError
from vm_eval.errors import BadArgument

ID_FROM = ("video-stem", "clip-id")
SONG_ID = re.compile(r"^[A-Za-z0-9_-]+$")  # upstream cuts the id at the file name's first dot
OUTPUT_DIR = "exp/visual+caption_mask2"  # inference_sdf.py:319
PRIVATE = ("data", "exp", "demo", "result")  # written (or read per song) by upstream: the tree has its own


def song_files(data: Path, song: str) -> dict[str, Path]:
    """Path inside upstream's working tree -> file under `data`, for the four files one BGM909 song needs."""
    rel = {f"POP909_4_bin_pnt_8bar/{song}.npz",  # dirs.py:8, dataset.py:38
           f"bgm909/new_raw_video_feats/{song}.pth",  # dataset.py:85
           f"bgm909/caption_feats/{song}.npy",  # dataset.py:86
           f"bgm909/detection/{song}_scenes.txt"}  # dataset.py:88
    return {f"data/{r}": data / r for r in sorted(rel)}


SPEC = UpstreamSpec(
    name="diff-bgm", title="Diff-BGM", repo="sizhelee/Diff-BGM", commit="c5a0e8a2d589142ce5951d99c1627fd7d523411c",
    licence="none stated (no LICENSE file at the commit: all rights reserved)", output="midi",
    entry_point="diffbgm/inference_sdf.py",
    environment="python version not stated upstream; torch 1.10.1, torchvision 0.11.2, labml 0.4.160, labml_helpers "
                "0.4.89, librosa 0.9.1, muspy 0.5.0, numpy 1.21.5, omegaconf 2.2.3, pretty_midi 0.2.9 "
                "(requirements.txt); `pip install -e diffbgm`; a CUDA GPU (the checkpoint is loaded without "
                "map_location)",
    checkpoints=(CheckpointSpec(
        "model", "Diff-BGM model folder (--model_dir): params.json + chkpts/weights_best.pt",
        "download the 'original' weights from Google Drive (file id 1QzmJjNsSDQKpAEATD3XbSZalI1AULx1O; 'only visual' "
        "1mtX24RLViblmSBbwx1WPqzQnSLnat5i3, 'w/o SAC-Att' 1q39Azhty0lznhfdVMWxplUkYN7CE0VmA; upstream README) into a "
        "folder as chkpts/weights_best.pt next to params.json (if the download has none, the repository's "
        "result/params.json appears to be the original model's: cond_type c_v, d_cond 512); the BGM909 features "
        "(README 'Preparations' 1-2) are needed too",
        kind="dir", files=("params.json", "chkpts/weights_best.pt")),),
    sample_rate=None, max_duration_s=None, min_midi_coverage=0.5,
    notes=("only clips of BGM909 songs whose precomputed features exist under <checkout>/data (or data_dir=): "
           "upstream has no feature extractor; every other clip is skipped as not applicable",
           "song id = the clip's source video file stem (id_from=video-stem) or the clip id (id_from=clip-id)",
           "generates the whole song (16 s per 8-bar segment at 120 BPM); the clip's span is cut from it, taking "
           "upstream's timeline as the video's as upstream's demo does",
           "runs in a private working tree per clip (symlinks to the checkout, its own data/train_split_pnt and "
           "exp/): nothing is written into the checkout",
           "one piano track; classifier-free guidance uncond_scale=5 (README); seed passed with --seed"),
)


def midi_window(src: Path, dst: Path, start_s: float) -> Path:
    """Copy `src` from `start_s` seconds on, shifted to start at 0, at one tempo of 120 BPM.

    Notes sounding at `start_s` start again at 0 with their velocity; controller and program events from before
    it move to 0. Times are kept in seconds (tempo changes included), so a render of the copy equals the
    render of the original from `start_s` on, up to a tick.
    """
    import mido

    mid = mido.MidiFile(str(src))
    tpb = mid.ticks_per_beat
    tempo_map, tick, tempo, seconds = [], 0, 500000, 0.0  # (tick, seconds at tick, tempo from then on)
    for msg in mido.merge_tracks(mid.tracks):
        seconds += mido.tick2second(msg.time, tpb, tempo)
        tick += msg.time
        if msg.type == "set_tempo":
            tempo = msg.tempo
            tempo_map.append((tick, seconds, tempo))

    def at(t: int) -> float:
        base_tick, base_s, base_tempo = 0, 0.0, 500000
        for mt, ms, mtempo in tempo_map:
            if mt > t:
                break
            base_tick, base_s, base_tempo = mt, ms, mtempo
        return base_s + mido.tick2second(t - base_tick, tpb, base_tempo)

    out = mido.MidiFile(type=mid.type, ticks_per_beat=tpb)
    for i, track in enumerate(mid.tracks):
        events, before, now = [], {}, 0  # (seconds after start, order, message); notes held across start_s
        for order, msg in enumerate(track):
            now += msg.time
            t = at(now) - start_s
            if msg.type == "set_tempo":
                continue
            key = (msg.channel, msg.note) if msg.type in ("note_on", "note_off") else None
            if msg.type == "note_on" and msg.velocity > 0:
                if t < 0:
                    before.setdefault(key, []).append(msg.velocity)
                    continue
            elif key is not None:  # a note_off (or note_on with velocity 0)
                if before.get(key):
                    velocity = before[key].pop()
                    if t <= 0:
                        continue  # ended before the window
                    events.append((0.0, -1, mido.Message("note_on", channel=key[0], note=key[1], velocity=velocity)))
                elif t < 0:
                    continue
            elif t < 0:  # programs, controllers, names: in force at the window's start, before its notes
                events.append((0.0, order - len(track) - 1, msg))
                continue
            events.append((max(0.0, t), order, msg))
        events.sort(key=lambda e: (e[0], e[1]))
        new, last = mido.MidiTrack(), 0
        if i == 0:
            new.append(mido.MetaMessage("set_tempo", tempo=500000, time=0))
        for t, _, msg in events:
            tick_t = int(round(t * tpb * 2))  # 120 BPM: 2 beats per second
            new.append(msg.copy(time=max(0, tick_t - last)))
            last = max(last, tick_t)
        out.tracks.append(new)
    dst.parent.mkdir(parents=True, exist_ok=True)
    out.save(str(dst))
    return dst


class DiffBGM(ExternalSystem):
    """Options: id_from ("video-stem" | "clip-id": how a clip names its BGM909 song), uncond_scale (classifier-free
    guidance, 5.0 as upstream's README), data_dir (the folder holding POP909_4_bin_pnt_8bar/ and bgm909/; default
    <checkout>/data)."""

    spec = SPEC

    def __init__(self, id_from: str = "video-stem", uncond_scale: float = 5.0, data_dir: str | Path | None = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if id_from not in ID_FROM:
            raise BadArgument(f"Diff-BGM id_from must be one of {', '.join(ID_FROM)}, not {id_from!r}")
        self.id_from, self.uncond_scale = id_from, float(uncond_scale)
        self.data_dir = Path(data_dir).expanduser().absolute() if data_dir else self.config.checkout.absolute() / "data"
        self.info.extra.update(id_from=id_from, uncond_scale=self.uncond_scale, data_dir=str(self.data_dir),
                               midi="whole BGM909 song at 120 BPM, the clip's span cut out before rendering")

    def song_id(self, clip) -> str:
        from vm_eval.models.api import NotApplicable

        song = Path(clip.clip.video).stem if self.id_from == "video-stem" else clip.id
        if not SONG_ID.match(song):
            raise NotApplicable(f"Diff-BGM: clip {clip.id} names BGM909 song {song!r} ({self.id_from}); BGM909 ids "
                                "hold no dots or spaces (upstream cuts the id at the file name's first dot)")
        return song

    def generate_clip(self, clip, work: Path):
        from vm_eval.models.api import NotApplicable

        try:
            song = self.song_id(clip)
            files = song_files(self.data_dir, song)
            missing = [p for p in files.values() if not p.is_file()]
            if missing:
                raise NotApplicable(
                    f"Diff-BGM needs BGM909's precomputed features for a clip's song and upstream ships no feature "
                    f"extractor (its CLIP2Video / BLIP + BERT / TransNetV2 features and POP909-format song files were "
                    f"made outside the repository), so clip {clip.id} (song {song!r}, from its {self.id_from}) "
                    f"cannot run: looked for {', '.join(map(str, files.values()))}; missing "
                    f"{', '.join(map(str, missing))}")
        except NotApplicable:
            self._cleanup(work)
            raise
        self.start_log(clip)
        tree = self.private_tree(work / "tree", song, files)
        out = tree / OUTPUT_DIR / f"{song}.mid"
        out.unlink(missing_ok=True)
        argv = [str(self.config.python), "diffbgm/inference_sdf.py",
                "--model_dir", str(self.config.checkpoints["model"].absolute()),
                "--uncond_scale", repr(self.uncond_scale), "--seed", str(clip.seed % 2**32)]
        self.run(clip, argv, cwd=tree, env=self.device_env())
        if not out.is_file():
            raise UpstreamError(
                self.spec.name, f"upstream exited 0 but wrote no {OUTPUT_DIR}/{song}.mid: inference_sdf.py skips a "
                "song whose data fails to load inside a bare `except: continue` and still exits 0, so one of "
                f"{', '.join(map(str, files.values()))} did not load (or the split file was not read); see the log",
                self.log_path(clip))
        midi, start = out, clip.clip.start
        if start > 1e-6:
            try:
                length = midi_duration_s(out)
                midi = midi_window(out, work / f"{song}-window.mid", start)
            except Exception:  # a broken file: collect_midi names the problem
                length = None
            if length is not None and length - start < self.spec.min_midi_coverage * clip.duration_s:
                raise UpstreamError(self.spec.name, f"wrong duration: Diff-BGM's music for song {song} lasts "
                                    f"{length:.2f} s (16 s per 8-bar segment of the song), too little of the "
                                    f"clip's span {start:.2f}-{clip.clip.end:.2f} s of its video", self.log_path(clip))
        return self.collect_midi(clip, midi, work)

    def private_tree(self, tree: Path, song: str, files: dict[str, Path]) -> Path:
        """Upstream's working directory for one clip (see the module docstring)."""
        tree.mkdir(parents=True)
        checkout = self.config.checkout.absolute()
        for entry in sorted(checkout.iterdir()):
            if entry.name not in PRIVATE and entry.name != ".git":
                (tree / entry.name).symlink_to(entry)
        for rel, src in files.items():
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            (tree / rel).symlink_to(src.absolute())
        split = tree / "data" / "train_split_pnt" / "pop909_new.pickle"
        split.parent.mkdir(parents=True)
        split.write_bytes(pickle.dumps(([], [f"{song}.npz"]), protocol=4))  # (train, valid): valid[0] is the song
        (tree / OUTPUT_DIR).mkdir(parents=True)
        (tree / "result").mkdir()  # dirs.py: os.mkdir("./result/symmv") needs it
        return tree
