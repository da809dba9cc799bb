"""Generate one video's chords with Video2Music's Python API (runs under UPSTREAM's interpreter).

    python video2music_generate.py --checkout DIR --weights DIR --soundfont FILE --video FILE --out FILE.mid \
        [--seed N] [--primer "C Am F G"] [--key "C major"] [--device cpu|cuda]

Video2Music (AMAAI-Lab/Video2Music @ 0ba43560) has no command line for a new video: README's `generate.py` only
reads its bundled dataset. Its documented route is `Video2music(device).generate(video, primer, key)`, which works
relative to the CURRENT directory: it deletes and recreates ./feature and ./output, reads
saved_models/AMT/*.pickle, soundfonts/default_sound_font.sf2 and dataset/vevo_meta/*.json, and writes
output/output.mid (plus output.flac, output.mp4 and temp-audio.m4a).

So this script never runs in the checkout. It turns the CURRENT directory (a fresh, private folder) into the layout
upstream expects, with symlinks:

    dataset                            -> <checkout>/dataset        (chord vocabularies)
    saved_models/AMT                   -> --weights                 (best_loss_weights.pickle, best_rmse_weights.pickle)
    soundfonts/default_sound_font.sf2  -> --soundfont               (only for upstream's own preview render)
    input<ext>                         -> --video                   (upstream puts the path UNQUOTED into a shell
                                                                     command: a fixed, safe relative name)

puts the checkout first on sys.path, builds the model, seeds random / numpy / torch (CPU and CUDA) with --seed
right before generate(), and copies output/output.mid to --out. Two runs in two folders never touch each other's
files, and the checkout (and any ./output a user keeps there) is left alone.

Device: upstream's utilities/device.py keeps USE_CUDA = False, so its sampling loop builds tensors on the CPU
whatever device the model is on. With --device cuda this script calls use_cuda(True) and builds the model on
"cuda:0" (pick the GPU with CUDA_VISIBLE_DEVICES); with --device cpu, everything stays on the CPU.

Must stay compatible with Python 3.7 (upstream asks for 3.8) and import nothing from vm-eval.
"""
import argparse
import os
import shutil
import sys

KEYS = ("C major", "G major", "D major", "A major", "E major", "B major", "F major", "Bb major", "Eb major",
        "Ab major", "Db major", "Gb major", "A minor", "E minor", "B minor", "F# minor", "C# minor", "G# minor",
        "D minor", "G minor", "C minor", "F minor", "Bb minor", "Eb minor")  # upstream's all_key_names


def parse_args(argv):
    p = argparse.ArgumentParser(prog="video2music_generate.py")
    p.add_argument("--checkout", required=True, help="the Video2Music clone (its modules are imported from there)")
    p.add_argument("--weights", required=True, help="folder with best_loss_weights.pickle, best_rmse_weights.pickle")
    p.add_argument("--soundfont", required=True, help="SoundFont for upstream's own (discarded) preview render")
    p.add_argument("--video", required=True)
    p.add_argument("--out", required=True, help="where to copy output/output.mid")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--primer", default="C Am F G", help="upstream's README example")
    p.add_argument("--key", default="C major", help="upstream's README example")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    return p.parse_args(argv)


def link(target, name):
    parent = os.path.dirname(name)
    if parent and not os.path.isdir(parent):
        os.makedirs(parent)
    if os.path.lexists(name):
        os.remove(name)
    os.symlink(os.path.abspath(target), name)


def seed_everything(seed):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        from seeded import seed_everything as seed_all  # the suite's seeding wrapper, same folder
    finally:
        sys.path.pop(0)
    return seed_all(seed)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.key not in KEYS:
        sys.exit("video2music_generate.py: --key %r is not one of upstream's keys: %s" % (args.key, ", ".join(KEYS)))
    checkout = os.path.abspath(args.checkout)
    for need in (os.path.join(args.weights, "best_loss_weights.pickle"),
                 os.path.join(args.weights, "best_rmse_weights.pickle"), args.soundfont, args.video,
                 os.path.join(checkout, "video2music.py"), os.path.join(checkout, "dataset", "vevo_meta")):
        if not os.path.exists(need):
            sys.exit("video2music_generate.py: %s not found" % need)
    work = os.getcwd()
    if os.path.realpath(work) == os.path.realpath(checkout):
        sys.exit("video2music_generate.py: run me in a private folder, not in the checkout (upstream deletes ./output)")
    link(os.path.join(checkout, "dataset"), "dataset")
    link(args.weights, os.path.join("saved_models", "AMT"))
    link(args.soundfont, os.path.join("soundfonts", "default_sound_font.sf2"))
    video = "input" + (os.path.splitext(args.video)[1].lower() or ".mp4")
    link(args.video, video)

    sys.path.insert(0, checkout)
    if args.device == "cuda":
        from utilities.device import use_cuda
        use_cuda(True)  # else upstream's sampling loop puts its tensors on the CPU next to a CUDA model
        device = "cuda:0"
    else:
        device = "cpu"
    from video2music import Video2music

    print("[video2music_generate] Video2music(device=%r) in %s" % (device, work), flush=True)
    model = Video2music(device=device)
    used = seed_everything(args.seed)
    print("[video2music_generate] seed %d; generate(%r, primer=%r, key=%r)" % (used, video, args.primer, args.key),
          flush=True)
    model.generate(video, args.primer, args.key)
    midi = os.path.join("output", "output.mid")
    if not os.path.isfile(midi) or os.path.getsize(midi) == 0:
        sys.exit("video2music_generate.py: generate() returned but wrote no %s" % os.path.join(work, midi))
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        os.makedirs(out_dir)
    shutil.copyfile(midi, args.out)
    print("[video2music_generate] %s -> %s (%d bytes)" % (midi, args.out, os.path.getsize(args.out)), flush=True)


if __name__ == "__main__":
    main()
