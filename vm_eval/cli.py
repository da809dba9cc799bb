"""`vm-eval`: the command line. Only argparse is imported at start; each command imports what it needs."""
from __future__ import annotations

import argparse
import sys

EPILOG = """examples:
  vm-eval demo                                   materialise the demo data, run and score every weightless model
  vm-eval run --model ground-truth --split test  generate + score one model on a split (resumable)
  vm-eval run --model dir:outputs/mysystem       score a folder of existing outputs named <clip id>.wav|.mp4
  vm-eval results --format json                  every stored run with aggregates and provenance
environment: VM_EVAL_RESULTS (results dir), VM_EVAL_DATA (datasets dir), VM_EVAL_CACHE (feature cache),
             VM_EVAL_WEIGHTS (pretrained checkpoints folder), HF_HUB_OFFLINE=1 (no hub calls)"""


class HelpFormatter(argparse.HelpFormatter):
    """Every option with a default says it in --help, unless its help text already does."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or action.default in (None, False, argparse.SUPPRESS, [], "")
                or "default" in text or text == argparse.SUPPRESS):
            return text
        return text + " (default: %(default)s)"


class RawHelpFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """HelpFormatter with the description and epilog as written (examples keep their lines)."""


class Parser(argparse.ArgumentParser):
    """Every (sub)command's parser: `--help` shows defaults, also where a raw description layout is asked."""

    def __init__(self, *args, **kwargs):
        fc = kwargs.get("formatter_class")
        if fc in (None, argparse.HelpFormatter):
            kwargs["formatter_class"] = HelpFormatter
        elif fc is argparse.RawDescriptionHelpFormatter:
            kwargs["formatter_class"] = RawHelpFormatter
        super().__init__(*args, **kwargs)


_WARNED: set[str] = set()


class DeprecatedAlias(argparse.Action):
    """An old option spelling, hidden from --help: still works, stores into the new option and warns once."""

    def __init__(self, option_strings, dest, new: str = "", **kwargs):
        self.new = new
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string not in _WARNED:
            _WARNED.add(option_string)
            print(f"warning: {option_string} is deprecated here, use {self.new} (same meaning)", file=sys.stderr)
        setattr(namespace, self.dest, values)


DATASETS_HELP = "datasets folder holding named datasets (default $VM_EVAL_DATA or ./data)"
DATASET_HELP = "dataset name under the datasets folder, or a manifest path"


def _add_datasets_folder(p: argparse.ArgumentParser) -> None:
    """--datasets DIR (the folder); the old --data spelling of `run`, `demo` and `data check` is an alias."""
    p.add_argument("--datasets", metavar="DIR", help=DATASETS_HELP)
    p.add_argument("--data", dest="datasets", action=DeprecatedAlias, new="--datasets")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", help="results folder (default $VM_EVAL_RESULTS or ./results)")
    _add_datasets_folder(p)
    p.add_argument("--limit", type=int, help="only the first N clips of the split (by id); the run stays 'partial'")
    p.add_argument("--seed", type=int, default=0, help="run seed; each clip draws from its own (seed, clip id) stream")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_training_args(p: argparse.ArgumentParser, split: str, split_help: str) -> None:
    """What `train` and `ablate` share: preset, data, steps, device, folders, progress."""
    p.add_argument("--preset", default="tiny", choices=("paper", "tiny"),
                   help="paper: MusicGen-medium + T5-base + ViT-B-32 (needs their weights); tiny: random CPU model")
    p.add_argument("--dataset", default="demo", metavar="NAME_OR_MANIFEST", help=DATASET_HELP)
    p.add_argument("--data", dest="dataset", action=DeprecatedAlias, new="--dataset")
    p.add_argument("--split", default=split, help=f"{split_help} (default {split})")
    p.add_argument("--steps", type=int, help="optimiser steps per stage (default: the preset's)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: the best available)")
    p.add_argument("--results", help="results folder (default $VM_EVAL_RESULTS or ./results)")
    p.add_argument("--datasets", metavar="DIR", help=DATASETS_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    ap = Parser(prog="vm-eval", description="Evaluate and benchmark video-to-music generation.", epilog=EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="store_true", help="print the version and exit")
    ap.add_argument("--debug", action="store_true", help="print the full traceback of user errors too (a bug's "
                    "traceback is always printed)")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="generate music for a split, score it, store the run",
                       description="Generate music for every clip of a split (skipping clips already generated), "
                       "score it, aggregate with 95% bootstrap CIs, store the run and print a table. Re-running the "
                       "same command resumes. Exit code 1 if any clip failed.")
    p.add_argument("--model", required=True, help="model name (see `vm-eval models`) or dir:PATH of existing outputs")
    p.add_argument("--split", default="test", help="dataset split (default test)")
    p.add_argument("--dataset", default="demo", metavar="NAME_OR_MANIFEST", help=DATASET_HELP)
    p.add_argument("--model-args", default="", help="k=v,... passed to the model; part of the run's identity")
    p.add_argument("--metrics", help="comma-separated metric names and @sets of published tables, e.g. @vidmuse "
                   "(see `vm-eval metrics --set NAME`; default: every metric that can run here)")
    p.add_argument("--batch-size", type=int, default=1, help="clips per model call (results do not depend on it)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where the work runs: local (generation in this process, scoring in worker processes; "
                        "the default) or a Ray cluster (generation on actors, one GPU each for GPU models; scoring "
                        "on CPU actors; pip install 'vm-eval[ray]'); stored results are the same either way")
    p.add_argument("--workers", type=int, help="local: worker processes (default: every core; a few clips are "
                                               "scored in this process); ray: actors (default: what the cluster fits)")
    p.add_argument("--ray-address", metavar="auto|HOST:PORT", help="Ray cluster to join (default: start a local one)")
    p.add_argument("--rescore", action="store_true", help="discard stored scores; keep generated audio and features")
    p.add_argument("--reference-set", metavar="MANIFEST[:SPLIT]",
                   help="reference music for set metrics such as FAD (default: the split's own reference music)")
    _add_run_args(p)

    p = sub.add_parser("results", help="stored runs: systems x headline metrics with CIs and ranks, references apart",
                       description="Per dataset/split, systems as rows and the headline metrics (one per family that "
                       "ran: FAD, KL, semantic, beat-to-visual, listening-test preference) as columns, 95% CIs, CI "
                       "rank ranges on the clips every ranked system scored; references (ground truth, chance, "
                       "anchors) below a rule and untrained runs badged, neither ranked. Then ablations and studies.")
    p.add_argument("--results", help="results folder (default $VM_EVAL_RESULTS or ./results)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table",
                   help="table for reading; json (strict, NaN as null) and csv: every run with every aggregate")
    p.add_argument("--metrics", metavar="M1,M2", help="comma-separated metric names as columns instead of the "
                   "headline metrics (default: one per family that ran)")
    p.add_argument("--nulls", action="store_true", help="also show the null sub-scores (name:vs-shift, "
                   "name:vs-other) of the shown metrics")
    p.add_argument("--sort", metavar="METRIC", help="sort and rank by this metric (default: the first column with "
                   "a direction)")
    p.add_argument("--wide", action="store_true", help="the full layout: runs as columns, every metric and "
                   "sub-score as rows")
    p.add_argument("--width", type=int, default=100, help="table width in characters")

    p = sub.add_parser("leaderboard", help="browse stored runs, ablations and listening studies (Streamlit app)",
                       description="Start the Streamlit leaderboard on the results folder: the runs table with CIs "
                       "and ranks, breakdowns per category and real vs AI-generated videos, ablations, listening "
                       "tests, a per-clip drill-down with each system's soundtrack, provenance. Filters and the "
                       "view live in the URL, so a view can be shared. It only reads results.")
    p.add_argument("--results", help="results folder (default $VM_EVAL_RESULTS or ./results)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1; 0.0.0.0 to share)")
    p.add_argument("--port", type=int, default=8501, help="port (default 8501)")

    p = sub.add_parser("report", help="one self-contained HTML report: summary, forest plots, breakdowns, "
                       "listening test, provenance",
                       description="Write one HTML file with nothing external (inline CSS, inline SVG plots, no "
                       "script): per dataset/split the summary table (systems x headline metrics, CI ranks, "
                       "references apart), a forest plot per metric with references as labelled lines, breakdowns "
                       "per video category and real vs AI-generated, the listening-test results, and provenance "
                       "(code version, packages, checkpoints and metric backbones with their hashes).")
    p.add_argument("--out", required=True, metavar="FILE.html", help="report file to write")
    p.add_argument("--runs", nargs="+", metavar="RUN", help="runs to include: run id, unique id prefix, run folder "
                   "or model name (its newest complete run), as `compare` (default: every stored run)")
    p.add_argument("--metrics", metavar="M1,M2", help="comma-separated metric columns (default: the headline "
                   "metrics, one per family that ran)")
    p.add_argument("--study", metavar="STUDY_DIR", help="listening study to show, analysed with `vm-eval study "
                   "analyze` (default: the newest registered study of these runs)")
    p.add_argument("--results", help="results folder (default $VM_EVAL_RESULTS or ./results)")

    p = sub.add_parser("compare", help="paired difference of two runs on the clips both have",
                       description="mean(A - B) per metric over the clips both runs scored with the same metric "
                       "identity, with a 95% paired bootstrap CI; * marks a CI that excludes 0.")
    p.add_argument("run_a", help="run id, unique id prefix, run folder, or a model name (its newest complete run; "
                   "as `study create --runs`)")
    p.add_argument("run_b", help="the same kinds of selector as run_a")
    p.add_argument("--split", help="split for model names (default: the other run's split, else test)")
    p.add_argument("--results", help="results folder (default $VM_EVAL_RESULTS or ./results)")

    sub.add_parser("models", help="registered models: what each needs, whether it can run here")
    p = sub.add_parser("metrics", help="registered metrics: identity, units, direction, whether it can run here")
    from vm_eval.metric_sets import SETS  # names only: the module imports nothing heavy

    p.add_argument("--set", metavar="NAME", help=f"list a metric set matching a published table ({', '.join(SETS)}): "
                   "its paper, each column's metric and notes, and whether each can run here; run it with "
                   "`vm-eval run --metrics @NAME` (or ablate --metrics @NAME)")

    p = sub.add_parser("weights", help="every pretrained checkpoint the suite knows: where it is looked for, whether it "
                       "is present and verified; `weights download` fetches them",
                       description="List every known checkpoint: where it is looked for, absent or present, and "
                       "verified when its files match the sha256 recorded in the weights folder's lock file when "
                       "`vm-eval weights download` fetched them (a changed file is refused: exit code 1).")
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION")
    w = wsub.add_parser(
        "download", help="fetch checkpoints into the weights folder: licence and size first, resumable, sha256 locked",
        description=(
            "Fetch pretrained checkpoints into the weights folder ($VM_EVAL_WEIGHTS, default\n"
            "~/.cache/vm-eval/weights): hub ones through huggingface_hub (HF_ENDPOINT, HF_TOKEN and the Hugging\n"
            "Face cache apply; a cached file is linked, not fetched again), URL ones with urllib. Each\n"
            "checkpoint's licence and sizes are printed before anything is fetched. A cut connection resumes with\n"
            "a Range request, and a URL file left as <file>.part by an interrupted command resumes from there\n"
            "(huggingface_hub keeps no partial file: an interrupted hub file starts over). A file gets its name\n"
            "only when complete, and its sha256 goes into weights.lock.json, which every later load checks.\n"
            "Offline (HF_HUB_OFFLINE=1 or TRANSFORMERS_OFFLINE=1, as `make` sets) nothing is fetched and one line\n"
            "per checkpoint says what to fetch where; the command does not override that:\n"
            "`HF_HUB_OFFLINE=0 vm-eval weights download ...` does, for that command. Exit code 0 when every\n"
            "checkpoint asked for is present afterwards (with --dry-run: when every one can be fetched)."),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  vm-eval weights download --for fad-vggish clap-caption   what two metrics need\n"
        "  vm-eval weights download musicgen-medium --dry-run       licence, sizes, target; nothing fetched\n"
        "  vm-eval weights download --all")
    w.add_argument("names", nargs="*", metavar="NAME", help="checkpoint names, as `vm-eval weights` lists them")
    w.add_argument("--for", dest="for_names", nargs="+", action="extend", default=[], metavar="METRIC_OR_MODEL",
                   help="the checkpoints these metrics, models or metric sets (@vidmuse, see `vm-eval metrics "
                   "--set`) need; give checkpoint NAMEs before --for")
    w.add_argument("--all", action="store_true", help="every known checkpoint")
    w.add_argument("--dry-run", action="store_true", help="print what would be fetched, from where, licence and "
                   "sizes (HEAD requests only); fetch nothing")

    p = sub.add_parser("data", help="datasets: materialise the demo, build from videos, check a manifest")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    d = dsub.add_parser("demo", help="materialise the synthetic demo dataset (deterministic, seconds)")
    d.add_argument("--out", help="folder (default <data>/demo)")
    d.add_argument("--force", action="store_true", help="regenerate even if present")
    d = dsub.add_parser("build", help="turn a folder of videos into a dataset manifest",
                        description="Cut every video of VIDEO_DIR into clips, take each video's soundtrack as the "
                        "reference music of its clips and write a manifest. Every video is decoded to its end once "
                        "(cached by content hash in $VM_EVAL_CACHE or <results>/.cache, so `data check` reuses "
                        "it); undecodable and truncated videos are skipped with the reason.")
    d.add_argument("video_dir", help="folder of videos (.mp4 .mov .mkv .webm .avi .m4v), searched recursively")
    d.add_argument("--out", required=True, help="manifest path to write (.jsonl or .parquet)")
    d.add_argument("--source", choices=("real", "ai-generated"), default="real",
                   help="what the videos are, stored on every clip (default real)")
    d.add_argument("--no-reference", action="store_true", help="do not take reference music from the videos' audio")
    d.add_argument("--categories", metavar="CSV", help="CSV with columns video,category[,caption] (default: "
                   "the category a video's top folder names, e.g. promos/, else other)")
    cut = d.add_mutually_exclusive_group()
    cut.add_argument("--max-clip-seconds", type=float, default=30.0, metavar="S",
                     help="cut each video into equal clips of at most S seconds (default %(default)g, MusicGen's "
                     "window): 65 s gives 3 clips of 21.667 s")
    cut.add_argument("--window", type=float, metavar="S", help="fixed clips of exactly S seconds instead, one "
                     "every --hop seconds (e.g. 10 for papers that score 10 s windows); a tail shorter than S is "
                     "dropped")
    d.add_argument("--hop", type=float, metavar="S", help="with --window: start a window every S seconds "
                   "(default: the window length, no overlap)")
    d.add_argument("--window-tolerance", type=float, default=0.5, metavar="S",
                   help="container durations are rounded: a video at most S seconds longer than a whole number "
                   "of clips is trimmed to them (BGM909's 30 s videos report 30.04 s: one 30 s clip; 30.6 s gives "
                   "two of 15.3 s); with --window, a last window missing at most S seconds is kept and ends at "
                   "the video's end (default %(default)g)")
    sp = d.add_mutually_exclusive_group()
    sp.add_argument("--split", metavar="NAME", help="put every clip in split NAME (a folder of test videos is a "
                    "test set: --split test)")
    sp.add_argument("--split-ratios", metavar="TRAIN,VAL,TEST", help="draw each video's split from a hash of "
                    "its id in these proportions (default 0.8,0.1,0.1); clips of one video share its split")
    d = dsub.add_parser("check", help="validate a manifest and report every problem at once")
    d.add_argument("manifest", nargs="?", default="demo", help="manifest path or dataset name (default demo)")
    _add_datasets_folder(d)
    d.add_argument("--no-decode", action="store_true", help="skip decoding (only existence, headers and schema); "
                   "otherwise each video is decoded to its end once to find truncated files, the result cached by "
                   "content hash in $VM_EVAL_CACHE or <results>/.cache")

    p = sub.add_parser("baselines", help="published systems run in their own environments: set-up check")
    bsub = p.add_subparsers(dest="baselines_command", metavar="ACTION", required=True)
    b = bsub.add_parser("check", help="per system: what is configured, what is missing, how to get it",
                        description="Inspect each published system's set-up (checkout, interpreter, checkpoints, "
                        "SoundFont for MIDI systems) from vm-eval.toml and VM_EVAL_<SYSTEM>_* variables. Runs no "
                        "upstream code. Exit code 0 when every listed system is ready, 1 otherwise.")
    b.add_argument("systems", nargs="*", help="systems to check (default: all)")
    b.add_argument("--config", help="configuration file (default $VM_EVAL_CONFIG, ./vm-eval.toml, "
                   "~/.config/vm-eval/vm-eval.toml)")
    b.add_argument("--brief", action="store_true", help="one line per system")

    p = sub.add_parser("study", help="pairwise listening studies: create a study (design + stimuli) from runs, serve it")
    ssub = p.add_subparsers(dest="study_command", metavar="ACTION", required=True)
    s = ssub.add_parser(
        "create", help="build a balanced pairwise design and loudness-normalised stimuli from stored runs",
        description="Create a pairwise listening study from stored runs: keep the clips every run has audio for, "
        "build a balanced design over (clip, system pair) with both side orders and per-rater balance, add catch "
        "trials (ground truth vs anchor-beat-shift / anchor-other-category; those runs are generated if no stored "
        "run covers the clips), and write one stimulus per (clip, system) used: the music fitted to the clip, "
        "normalised to the config's loudness (default -23 LUFS, true peak <= -1 dBTP) and muxed with the clip's "
        "silent video, named by a content hash. manifest.json is written last and marks the study complete. "
        "Options given here override --config, which overrides the defaults.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  vm-eval study create --runs ground-truth beat-sync random-retrieval --out studies/pilot"
        "\n  vm-eval study create --runs 1a2b3c 4d5e6f --split test --out S --raters 30 --trials-per-rater 40 "
        "--catch-rate 0.1\nerrors (unknown or ambiguous run, mixed splits, no usable clips, invalid config) exit 2.")
    s.add_argument("--runs", nargs="+", metavar="RUN", default=[],
                   help="runs to compare (2 or more): run id, unique id prefix, run folder, or a model name with "
                   "exactly one stored run on the dataset/split (default: `systems` of --config)")
    s.add_argument("--split", help="dataset split every run must be on (default: the runs' split; test for model names)")
    s.add_argument("--out", required=True, metavar="STUDY_DIR", help="study folder to write")
    s.add_argument("--raters", type=int, help="number of raters the design is made for (default 20)")
    s.add_argument("--trials-per-rater", type=int, metavar="K", help="trials per rater, catch trials included "
                   "(default 40)")
    s.add_argument("--catch-rate", type=float, metavar="R", help="share of trials that are catch trials, 0-0.5 "
                   "(default 0.1; 0 = none, no anchor runs needed)")
    s.add_argument("--allow-ties", action=argparse.BooleanOptionalAction, default=None,
                   help="let raters answer 'no preference' (default: no ties)")
    s.add_argument("--min-listen", type=float, metavar="S", help="seconds each soundtrack must play before the "
                   "answers unlock (default 5)")
    s.add_argument("--seed", type=int, help="design seed: same inputs and seed, same design (default 0)")
    s.add_argument("--config", help="study config (YAML or JSON: questions, loudness target, texts, any option "
                   "above); see studies/config.py")
    s.add_argument("--results", help="results folder holding the runs (default $VM_EVAL_RESULTS or ./results)")
    s.add_argument("--force", action="store_true", help="re-create a complete study in STUDY_DIR (cached stimuli "
                   "are reused)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s = ssub.add_parser(
        "serve", help="serve a created study to raters (consent, volume check, trials, completion code)",
        description="Serve the listening test of a complete study (STUDY_DIR must pass the manifest check of "
        "`study create`). Raters open the printed URL (append ?rater=ID, or the Prolific PROLIFIC_PID, STUDY_ID and "
        "SESSION_ID parameters, to use your own ids); "
        "votes go to SQLite at STUDY_DIR/votes.sqlite (WAL mode) unless --db names another database. Admin "
        "endpoints (/admin/progress, /admin/export?format=csv|json) need the admin token printed at start-up, as "
        "'Authorization: Bearer TOKEN' or 'X-Admin-Token: TOKEN' (a header only, never in the URL).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  vm-eval study serve studies/pilot\n  vm-eval study serve S --host 0.0.0.0 --port 8080 "
        "--db postgresql+psycopg://user@db/votes\nenvironment: VM_EVAL_STUDY_ADMIN_TOKEN (admin token, instead of a "
        "fresh one per start)")
    s.add_argument("study_dir", metavar="STUDY_DIR", help="study folder written by `vm-eval study create`")
    s.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8700, help="port (default 8700)")
    s.add_argument("--db", metavar="URL", help="SQLAlchemy database URL (default sqlite:///STUDY_DIR/votes.sqlite)")
    s.add_argument("--admin-token", help="admin token (default $VM_EVAL_STUDY_ADMIN_TOKEN, else a fresh random one)")
    s.add_argument("--workers", type=int, default=1, metavar="N",
                   help="uvicorn worker processes (default 1; more than 1 needs a PostgreSQL --db, where slot "
                   "assignment is locked in the database; SQLite serves with one)")
    s = ssub.add_parser(
        "analyze", help="statistics of a study's votes: win rates, Bradley-Terry ranks, agreement, rater screening",
        description="Analyse the votes of the study's current version (its manifest hash): per question, win rates "
        "per system pair (Clopper-Pearson CI, exact binomial test, Holm), Bradley-Terry log-strengths with a "
        "raters x clips bootstrap CI (undefined below 5 raters or clips) and rank ranges, position bias, "
        "Krippendorff's alpha and split-half reliability, after leaving out the practice trial and excluding raters "
        "who fail the catch trials (or the headphone screening, when the study config says so). Warns below the "
        "study config's thresholds (default 10 raters, 20 votes per pair). Writes CSV, parquet, plots and "
        "summary.json into STUDY_DIR/analysis/.", formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("study_dir", metavar="STUDY_DIR", help="study folder written by `vm-eval study create`")
    s.add_argument("--db", metavar="URL", help="SQLAlchemy database URL (default sqlite:///STUDY_DIR/votes.sqlite)")
    s.add_argument("--out", help="output folder (default STUDY_DIR/analysis)")
    s.add_argument("--ties", choices=("exclude", "half"), default="exclude",
                   help="ties dropped (default, sign-test convention) or counted as half a win each")
    s.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    s.add_argument("--min-catch-accuracy", type=float, default=0.75,
                   help="exclude raters below this catch-trial accuracy (default 0.75)")
    s.add_argument("--min-catch-trials", type=int, default=2,
                   help="exclude raters who saw fewer scored catch trials (default 2)")
    s.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and split-half draws")
    s.add_argument("--cluster", choices=("two-way", "rater", "vote"), default="two-way",
                   help="bootstrap units of the Bradley-Terry CIs: raters and clips (default), raters, or votes")
    s.add_argument("--question", help="question whose arena table is printed (default: overall, else the first)")
    s.add_argument("--no-plots", action="store_true", help="tables and summary only")
    s.add_argument("--results", help="results folder to register the summary in, for `vm-eval results` and the "
                                     "leaderboard (default: the folder holding the study's runs)")
    s = ssub.add_parser(
        "agree", help="which objective metric agrees with the raters: vote accuracy and rank correlation",
        description="For each question and every objective metric stored for the study's runs on its clips: how "
        "often the sign of the metric's per-clip difference between the two soundtracks predicts the rater's "
        "choice (direction respected; accuracy with a raters x clips bootstrap CI, chance 0.5, metric ties counted "
        "apart), and Kendall's tau between the metric's system ranking and the Bradley-Terry ranking, with its CI. "
        "Uses the votes `study analyze` uses. Writes agreement.csv/.json and agreement-<question>.png/.svg into "
        "STUDY_DIR/analysis/ and adds the table to the study's leaderboard entry (after `study analyze`).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  vm-eval study analyze studies/pilot && vm-eval study agree studies/pilot")
    s.add_argument("study_dir", metavar="STUDY_DIR", help="study folder written by `vm-eval study create`")
    s.add_argument("--db", metavar="URL", help="SQLAlchemy database URL (default sqlite:///STUDY_DIR/votes.sqlite)")
    s.add_argument("--out", help="output folder (default STUDY_DIR/analysis)")
    s.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples per pass (default 1000)")
    s.add_argument("--cluster", choices=("two-way", "rater", "vote"), default="two-way",
                   help="bootstrap units: raters and clips (default), raters, or votes")
    s.add_argument("--min-catch-accuracy", type=float, default=0.75,
                   help="exclude raters below this catch-trial accuracy (default 0.75)")
    s.add_argument("--min-catch-trials", type=int, default=2,
                   help="exclude raters who saw fewer scored catch trials (default 2)")
    s.add_argument("--seed", type=int, default=0, help="seed of the bootstrap draws")
    s.add_argument("--no-plots", action="store_true", help="tables only")
    s.add_argument("--results", help="results folder holding the study's leaderboard entry (default: the folder "
                                     "holding the study's runs)")

    p = sub.add_parser("model-info", help="VidMusician parameter breakdown per component (no weights needed)",
                       description="Build VidMusician on the meta device (no weights, no memory) and print total and "
                       "trainable parameters per component, against the paper's 24.79M trainable.")
    p.add_argument("--preset", default="paper", choices=("paper", "tiny"))
    p.add_argument("--override", default="", help="config overrides k=v,... with dotted keys, e.g. rhythm.init=default")

    p = sub.add_parser("train", help="train VidMusician (stage 1 semantic, stage 2 rhythm) on a dataset split",
                       description="Train VidMusician: EnCodec tokens and CLIP features of the split are computed once "
                       "and cached; the backbone stays frozen; stage 1 trains the semantic module (Embedding Manager, "
                       "T5 LoRA, projector), stage 2 the rhythm adapter (zero/identity init). Re-running the same "
                       "command resumes from the last saved step. Writes checkpoint.safetensors (trainable weights, "
                       "config, identities of the frozen weights) when every stage is done.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  vm-eval train --preset tiny --dataset demo --steps 40   CPU, random weights, "
                       "seconds\n  vm-eval train --preset paper --dataset data/dvmset/manifest.jsonl --stage both")
    _add_training_args(p, "train", "split to train on")
    p.add_argument("--stage", choices=("1", "2", "both", "joint"),
                   help="1 semantic, 2 rhythm (needs --init-from), both = 1 then 2 (default), joint = one stage")
    p.add_argument("--out", help="output folder (default <results>/train/<preset>-<config hash>)")
    p.add_argument("--override", default="", help="config overrides k=v,... with dotted keys, e.g. train.lr=3e-4")
    p.add_argument("--init-from", help="checkpoint whose weights start the training (stage 2 after a stage-1 run)")

    p = sub.add_parser("ablate", help="train and score an ablation grid; paired differences vs the full model",
                       description="Train every variant of an ablation grid (default: the paper's Table 3) from the "
                       "same cached inputs, run each on the same clips with the same seeds, score them, and print every "
                       "metric as a paired bootstrap difference against the reference variant with its 95% CI; * marks "
                       "Holm-corrected significance across variants x metrics. Trained variants and finished runs are "
                       "reused: re-running the same command resumes.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  vm-eval ablate --preset tiny --dataset demo     the whole default grid on CPU "
                       "(mechanics only)\n  vm-eval ablate --variants no-rhythm,rhythm-cls --preset paper --dataset M.jsonl")
    p.add_argument("--grid", help="grid file (YAML; default: the paper's Table 3, vm_eval/ablate/paper_table3.yaml)")
    _add_training_args(p, "test", "split to generate and score")
    p.add_argument("--train-split", default="train", help="split to train on (default train)")
    p.add_argument("--variants", help="comma-separated variant names (the reference is always included)")
    p.add_argument("--metrics", help="comma-separated metric names and @sets of published tables, e.g. @vidmuse "
                   "(see `vm-eval metrics --set NAME`; default: every metric that can run here)")
    p.add_argument("--jobs", type=int, help="variants trained and run at once after the reference, one process each "
                   "(default: 1 on a GPU machine, every core on a CPU-only one; with --executor ray: as many as the "
                   "cluster has GPUs, or CPUs on a CPU-only cluster)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local worker processes (default) or Ray actors, one GPU per variant when the cluster has "
                        "GPUs (pip install 'vm-eval[ray]')")
    p.add_argument("--ray-address", metavar="auto|HOST:PORT", help="Ray cluster to join (default: start a local one)")
    p.add_argument("--limit", type=int, help="only the first N clips of the split; the runs stay 'partial'")
    p.add_argument("--seed", type=int, default=0, help="run seed, the same for every variant")

    p = sub.add_parser("demo", help="the demo: materialise demo data, run every weightless model on test, show results")
    _add_run_args(p)
    return ap


BUG_NOTE = ("vm-eval: internal error. This is a bug in vm-eval, not in your input or set-up; please report it as "
            "README.md's \"Reporting problems\" section says (the command, `vm-eval --version`, the traceback above, "
            "and for a run the run.json in its folder).")


def main(argv: list[str] | None = None) -> int:
    """Run one command. Exit code: the command's own (0 ok, 1 e.g. failed clips), 2 for a user error (one line),
    1 for a bug (its traceback and where to report it), 130 for Ctrl-C."""
    args = build_parser().parse_args(argv)
    if args.version:
        from vm_eval import __version__

        print(f"vm-eval {__version__}")
        return 0
    if not args.command:
        build_parser().print_help()
        return 0
    import traceback

    from vm_eval import commands
    from vm_eval.errors import user_errors

    try:
        return getattr(commands, "cmd_" + args.command.replace("-", "_"))(args)
    except KeyboardInterrupt:
        print("\ninterrupted: finished clips are stored; run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `vm-eval results | head`: the reader left; nothing to report
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail again
        return 141
    except user_errors() as e:  # evaluated only when something was raised
        if args.debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception:  # anything else is a bug: its traceback is what a report needs
        traceback.print_exc()
        print(BUG_NOTE, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
