"""The published-system framework: configuration, the seeding wrapper, subprocess timeouts, MIDI rendering, checks."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from baseline_fakes import checkpoint_dir, configure, fake_checkout
from baselines.external.adapter import inspect
from baselines.external.config import ConfigError, load_system_config
from baselines.external.midi import MidiRenderError, midi_duration_s, render_midi, set_tempo
from baselines.external.process import UpstreamTimeout, run_upstream, seeded_argv
from baselines.vidmuse import SPEC as VIDMUSE

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for var in list(os.environ):
        if var.startswith("VM_EVAL_VIDMUSE_") or var in ("VM_EVAL_CONFIG", "VM_EVAL_SOUNDFONT"):
            monkeypatch.delenv(var)
    return tmp_path


# ------------------------------------------------------------------------------------------ configuration
def test_config_file_relative_paths_and_environment_override(clean_env, monkeypatch):
    cfg_file = clean_env / "conf" / "vm-eval.toml"
    cfg_file.parent.mkdir()
    cfg_file.write_text('[baselines.vidmuse]\ncheckout = "VidMuse"\npython = "/envs/vm/bin/python"\ntimeout_s = 60\n'
                        '[baselines.vidmuse.checkpoints]\nmodel = "../w/VidMuse"\n[baselines.vidmuse.env]\nA = "1"\n'
                        '[midi]\nsoundfont = "sf/GM.sf2"\n')
    cfg = load_system_config("vidmuse", cfg_file)
    assert cfg.checkout == cfg_file.parent / "VidMuse" and cfg.python == Path("/envs/vm/bin/python")
    assert cfg.checkpoints == {"model": cfg_file.parent / "../w/VidMuse"} and cfg.timeout_s == 60.0
    assert cfg.env == {"A": "1"} and cfg.soundfont == cfg_file.parent / "sf/GM.sf2"
    monkeypatch.setenv("VM_EVAL_VIDMUSE_CHECKOUT", "/elsewhere")
    monkeypatch.setenv("VM_EVAL_VIDMUSE_CKPT_MODEL", "/w2")
    monkeypatch.setenv("VM_EVAL_VIDMUSE_TIMEOUT_S", "5")
    monkeypatch.setenv("VM_EVAL_CONFIG", str(cfg_file))  # found through the variable as well
    cfg = load_system_config("vidmuse")
    assert cfg.checkout == Path("/elsewhere") and cfg.checkpoints["model"] == Path("/w2") and cfg.timeout_s == 5.0
    assert cfg.origin["checkout"] == "$VM_EVAL_VIDMUSE_CHECKOUT" and cfg.origin["python"] == str(cfg_file)


@pytest.mark.parametrize("text, message", [
    ("[baselines.vidmuse]\ncheckotu = 'x'\n", "unknown keys ['checkotu']"),
    ("[baselines.vidmuse\n", "not valid TOML"),
    ("[baselines.vidmuse]\ntimeout_s = -1\n", "positive number"),
    ("[baselines.vidmuse]\ncheckout = 3\n", "non-empty path string"),
])
def test_bad_config_files_are_refused_with_the_reason(clean_env, text, message):
    (clean_env / "vm-eval.toml").write_text(text)  # ./vm-eval.toml is found without being named
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_system_config("vidmuse")


def test_a_named_config_file_must_exist(clean_env):
    with pytest.raises(ConfigError, match="does not exist"):
        load_system_config("vidmuse", clean_env / "nope.toml")


# ------------------------------------------------------------------------------------------ subprocesses
def test_seeding_wrapper_makes_upstream_randomness_repeatable(tmp_path):
    script = tmp_path / "up" / "draw.py"
    script.parent.mkdir()
    (script.parent / "helper_mod.py").write_text("X = 7\n")
    script.write_text("import random, sys, numpy, torch, helper_mod\n"
                      "print(sys.argv[1:], helper_mod.X, random.random(), numpy.random.rand(), float(torch.rand(1)))\n")

    def draw(seed):
        argv = seeded_argv(Path(sys.executable), seed, script, ["--flag", "a b"])
        return subprocess.run(argv, capture_output=True, text=True, check=True, cwd=tmp_path).stdout.splitlines()[-1]

    a, b, c = draw(2**40 + 5), draw(2**40 + 5), draw(6)
    assert a == b and a != c
    import torch

    torch.manual_seed((2**40 + 5) % 2**32)  # torch is seeded when the script imports it, as if seeded up front
    assert a.endswith(str(float(torch.rand(1))))
    assert a.startswith("['--flag', 'a b'] 7")  # argv passed through, the script's folder importable


def test_timeout_kills_the_whole_process_tree(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    script = tmp_path / "spawn.py"
    script.write_text("import subprocess, sys, time\n"
                      f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
                      f"open({str(pid_file)!r}, 'w').write(str(p.pid))\nprint('started', flush=True)\ntime.sleep(300)\n")
    t0 = time.perf_counter()
    with pytest.raises(UpstreamTimeout) as e:
        run_upstream("fake", [sys.executable, str(script)], tmp_path, tmp_path / "log.txt", timeout_s=2)
    assert time.perf_counter() - t0 < 20
    assert "timeout" in str(e.value) and "started" in str(e.value)  # the log's tail is in the message
    pid = int(pid_file.read_text())
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the grandchild process survived the timeout")


# ------------------------------------------------------------------------------------------ MIDI
def _midi(path: Path, beats: int = 4, bpm: float | None = None) -> Path:
    import mido

    mid = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    if bpm:
        tr.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    for i in range(beats):
        tr.append(mido.Message("note_on", note=60 + i, velocity=100, time=0))
        tr.append(mido.Message("note_off", note=60 + i, velocity=0, time=480))
    mid.save(str(path))
    return path


@pytest.mark.skipif(not SOUNDFONT.is_file(), reason="fluid-soundfont-gm is installed by scripts/install.sh")
def test_render_midi_with_fluidsynth(tmp_path):
    midi = _midi(tmp_path / "a.mid")  # 4 quarter notes at the default 120 BPM = 2 s
    assert midi_duration_s(midi) == pytest.approx(2.0)
    audio = render_midi(midi, SOUNDFONT, tmp_path / "a.wav")
    assert audio.sample_rate == 32000 and audio.channels == 2
    assert audio.duration_s >= 2.0  # plus the release tail
    first, second = audio.crop(0, 0.5).samples, audio.crop(3.0).samples
    assert np.sqrt(np.mean(first**2)) > 1e-3 and np.sqrt(np.mean(second**2)) < np.sqrt(np.mean(first**2)) / 10
    slow = set_tempo(midi, tmp_path / "slow.mid", 60.0)
    assert midi_duration_s(slow) == pytest.approx(4.0)
    retimed = set_tempo(_midi(tmp_path / "b.mid", bpm=200), tmp_path / "b60.mid", 60.0)  # existing tempo replaced
    assert midi_duration_s(retimed) == pytest.approx(4.0)


def test_render_midi_errors_name_the_missing_piece(tmp_path, monkeypatch):
    midi = _midi(tmp_path / "a.mid")
    with pytest.raises(MidiRenderError, match="SoundFont .*nope.sf2 not found"):
        render_midi(midi, tmp_path / "nope.sf2", tmp_path / "a.wav")
    with pytest.raises(MidiRenderError, match="missing or empty"):
        render_midi(tmp_path / "none.mid", SOUNDFONT, tmp_path / "a.wav")
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(MidiRenderError, match="fluidsynth is not installed"):
        render_midi(midi, SOUNDFONT, tmp_path / "a.wav")


# ------------------------------------------------------------------------------------------ checks
def test_check_warns_about_another_upstream_commit(tmp_path, monkeypatch, clean_env):
    checkout = fake_checkout(tmp_path / "VidMuse", {"infer.py": "vidmuse_infer.py"})
    git = ["git", "-C", str(checkout), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "fake"], check=True)
    ckpt = checkpoint_dir(tmp_path / "model", ("state_dict.bin", "compression_state_dict.bin"))
    configure(monkeypatch, "vidmuse", checkout, {"model": ckpt})
    st = inspect(VIDMUSE, load_system_config("vidmuse"))
    assert st.ready and len(st.checkout_commit) == 40
    assert [p.fatal for p in st.problems] == [False] and "the adapter mirrors 1e9296e78a85" in st.problems[0].what


def test_cli_baselines_check(tmp_path, monkeypatch, clean_env):
    from vm_eval.cli import main

    assert main(["baselines", "check", "vidmuse", "--brief"]) == 1
    checkout = fake_checkout(tmp_path / "VidMuse", {"infer.py": "vidmuse_infer.py"})
    configure(monkeypatch, "vidmuse", checkout,
              {"model": checkpoint_dir(tmp_path / "m", ("state_dict.bin", "compression_state_dict.bin"))})
    assert main(["baselines", "check", "vidmuse"]) == 0
    assert main(["baselines", "check", "no-such-system"]) == 2
