#!/usr/bin/env bash
# The one install step of vm-eval: system packages, the virtual environment, every Python dependency.
# Every workaround for a third-party package lives here, with the reason beside it.
#   usage: scripts/install.sh [VENV_DIR]      (default .venv; idempotent, the Makefile calls it through a stamp)
set -euo pipefail

VENV="${1:-.venv}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3

log() { printf '\033[1;34m[install]\033[0m %s\n' "$*"; }

# --- system packages (Debian) -------------------------------------------------------------------------
# ffmpeg: torchcodec and torchaudio's I/O load its shared libraries; `ffprobe`/`ffmpeg` mux soundtracks.
# fluidsynth + fluid-soundfont-gm: MIDI outputs of the CMT, Video2Music and Diff-BGM baselines are rendered
# to audio with FluidSynth and the GM SoundFont (FluidR3_GM.sf2).
# chromium + chromium-driver: the real-browser tests (listening-test rater session, leaderboard) drive Debian's
# headless Chromium through Selenium; Selenium's own browser download needs a network this machine does not have.
# postgresql: the listening-test server's multi-worker database (`study serve --workers N --db postgresql+psycopg://`);
# the tests and benchmarks/study_load.py start a throwaway server from its binaries (/usr/lib/postgresql/*/bin), and
# it brings libpq5, which the pure-Python psycopg driver loads.
APT_PACKAGES=(ffmpeg fluidsynth fluid-soundfont-gm chromium chromium-driver postgresql)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  log "apt: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- virtual environment ------------------------------------------------------------------------------
[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
# pip's configuration here lists index folders that do not exist for every package; its "is ignored" warnings
# say nothing about the install and would drown real messages.
pip_install() {
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  return "${PIPESTATUS[0]}"
}
PIP=(pip_install)
"${PIP[@]}" --upgrade pip wheel

# torch first, pinned. On this CPU machine pip's find-links holds a CPU wheel of 2.13.0; on a CUDA machine the
# same command takes the registry's CUDA build. Every later install runs under the constraints file so that no
# package can swap torch for another build (open_clip_torch unconstrained pulls a newer torch plus GBs of CUDA).
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  # A GPU machine must get the registry's CUDA build even where pip's find-links also offer a CPU wheel.
  PIP_FIND_LINKS="" "${PIP[@]}" "torch==2.13.0"
else
  "${PIP[@]}" "torch==2.13.0"
fi
CONSTRAINTS="$HERE/scripts/constraints.txt"
PIPC=("${PIP[@]}" -c "$CONSTRAINTS")

# Core and model-side packages that install cleanly.
"${PIPC[@]}" -r "$HERE/scripts/requirements.txt"

# torchaudio / torchcodec: 2.11.0 is the newest torchaudio on the registry; torchcodec 0.13.0 has a CPU build.
"${PIPC[@]}" "torchaudio==2.11.0" "torchcodec==0.13.0"

# audiocraft 1.3.0 pins torch 2.1.0 and an `av` version that does not build: install it without its declared
# dependencies and add the modules it really imports (see scripts/requirements-audiocraft.txt).
"${PIPC[@]}" --no-deps "audiocraft==1.3.0"
"${PIPC[@]}" -r "$HERE/scripts/requirements-audiocraft.txt"

# laion-clap and frechet-audio-distance pin numpy<2 but work with numpy 2: no declared deps, real ones added.
"${PIPC[@]}" --no-deps "laion-clap==1.1.7" "frechet-audio-distance==0.3.4"
"${PIPC[@]}" torchlibrosa braceexpand webdataset wget h5py progressbar resampy encodec

# Metric backbones' upstream model code (weights are never downloaded by the install): torchvggish 0.2 is an
# sdist whose declared deps would re-resolve torch; hear21passt declares timm/torchaudio ranges we already satisfy.
"${PIPC[@]}" --no-deps "torchvggish==0.2" "hear21passt==0.0.26"
# torchopenl3 1.0.1 (a torch port of OpenL3's network): the tests check metrics/backbones/openl3.py layer for layer
# against it. Its declared resampy<0.3 would downgrade resampy; what it imports is here, plus six.
"${PIPC[@]}" --no-deps "torchopenl3==1.0.1" six

# ImageBind (imagebind-score): imagebind-unofficial 0.1.1 is facebookresearch/ImageBind main, file for file. Its
# declared deps would bring torchvision/torchaudio/decord builds of their own: install it without them and add what
# it really imports (`import imagebind` imports imagebind.data, hence pytorchvideo, and iopath + portalocker; timm,
# ftfy, regex, einops are already here). pytorchvideo 0.1.5 imports a torchvision module renamed since: the
# import-time alias lives in vm_eval/compat.py.
"${PIPC[@]}" --no-deps "imagebind-unofficial==0.1.1" "pytorchvideo==0.1.5" "iopath==0.1.10" portalocker

# madmom 0.16.1 compiles Cython against numpy at build time and imports pkg_resources (gone in setuptools 81):
# build it in this environment, not an isolated one.
"${PIPC[@]}" cython "setuptools<81"
"${PIPC[@]}" --no-build-isolation "madmom==0.16.1"

# CPU-only torch: the registry's torchaudio is linked against CUDA, so its compiled library cannot load and
# takes `import torchaudio` down. Without it torchaudio runs as pure Python (resample, MelSpectrogram; I/O
# through torchcodec). torchvision's compiled ops are handled at import time by vm_eval/compat.py.
if [ -z "$("$VENV/bin/python" -c 'import torch; print(torch.version.cuda or "")')" ]; then
  TA_DIR="$("$VENV/bin/python" -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("torchaudio").origin))')"
  find "$TA_DIR" -maxdepth 2 -name '*.so' \( -name 'libtorchaudio*' -o -name '_torchaudio*' \) -print -delete \
    | sed 's/^/[install] CPU torch: removed CUDA-linked /'
fi

# Ray: the optional `ray` executor (`pip install 'vm-eval[ray]'` elsewhere). The development environment has it
# so that `make test` proves the Ray executor too; nothing else imports it.
"${PIPC[@]}" "ray>=2.9"

# The suite itself, editable, without re-resolving anything.
"${PIP[@]}" --no-deps -e "$HERE"
log "done: $("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)')"
