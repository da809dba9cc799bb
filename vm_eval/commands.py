"""Implementations of the CLI commands (imported only once a command runs)."""
from __future__ import annotations

import sys
from pathlib import Path

from vm_eval import paths
from vm_eval.errors import MissingPackage, UserFileNotFound
from vm_eval.registry import parse_kv


def _print_outcome(outcome, not_run_note: bool = True) -> None:
    from vm_eval.scoring.summary import OUTPUT_FLAGS

    c = outcome.counts
    print(f"run {outcome.run.dir}: {outcome.status}; clips {c['done']} done, {c['failed']} failed, "
          f"{c['skipped']} skipped, {c['pending']} pending of {c['clips']}", file=sys.stderr)
    flagged = [f"{c[flag]} {flag.replace('_', ' ')}" for flag in OUTPUT_FLAGS if c.get(flag)]
    if flagged:
        print(f"  flagged outputs: {', '.join(flagged)}", file=sys.stderr)
    if outcome.skipped_metrics and not_run_note:  # the demo lists them once, under its table
        print(f"  {len(outcome.skipped_metrics)} metric(s) not run here (listed under the table)", file=sys.stderr)
    if outcome.failed:
        _print_failures(outcome.run)


def _print_failures(run, limit: int = 10) -> None:
    gen = [r for r in run.generation.latest("clip_id").values() if r["status"] == "failed"]
    sco = [r for r in run.scores.latest("clip_id", "metric_key").values() if r["status"] == "failed"]

    def where(r: dict) -> str:
        return r["clip_id"] + (f" [{r['metric']}]" if "metric" in r else "")

    for r in (gen + sco)[:limit]:
        print(f"  FAILED {where(r)}: {r.get('reason')}", file=sys.stderr)
    if len(gen) + len(sco) > limit:
        print(f"  ... {len(gen) + len(sco) - limit} more in {run.dir / 'journal'}", file=sys.stderr)
    first = next((r for r in gen + sco if r.get("traceback")), None)
    if first is not None:  # a failure is rarely understood from its last line; one traceback, not ten
        print(f"  traceback of {where(first)} (every failure's is in its journal record):", file=sys.stderr)
        print("    " + first["traceback"].rstrip().replace("\n", "\n    "), file=sys.stderr)


def cmd_run(args) -> int:
    from vm_eval.metric_sets import expand_metric_names
    from vm_eval.results import format_table, run_summary
    from vm_eval.executors.local import default_workers
    from vm_eval.runner import RunConfig, execute

    cfg = RunConfig(
        model=args.model, split=args.split, dataset=args.dataset, model_args=parse_kv(args.model_args),
        metrics=expand_metric_names(args.metrics),
        results=paths.results_dir(args.results), data=paths.data_dir(args.datasets), seed=args.seed, limit=args.limit,
        batch_size=args.batch_size, rescore=args.rescore, reference_set=args.reference_set, progress=not args.quiet,
        executor=args.executor, ray_address=args.ray_address,
        workers=args.workers or (default_workers() if args.executor == "local" else None),
    )
    outcome = execute(cfg)
    print(format_table([run_summary(outcome.run)]))
    _print_outcome(outcome)
    return 1 if outcome.failed else 0


def cmd_demo(args) -> int:
    from vm_eval.data.demo import make_demo
    from vm_eval.registries import weightless_models
    from vm_eval.runner import RunConfig, execute

    data = paths.data_dir(args.datasets)
    manifest = make_demo(data / "demo")
    print(f"demo dataset: {manifest}", file=sys.stderr)
    runs, failed = [], 0
    for entry in weightless_models():
        print(f"== {entry.name}: {entry.summary}", file=sys.stderr)
        outcome = execute(RunConfig(model=entry.name, split="test", dataset="demo", results=paths.results_dir(args.results),
                                    data=data, seed=args.seed, limit=args.limit, progress=not args.quiet))
        _print_outcome(outcome, not_run_note=False)
        failed += outcome.failed
        runs.append(outcome.run)
    outcome = _demo_vidmusician(args, data)
    failed += outcome.failed
    runs.append(outcome.run)
    results = paths.results_dir(args.results)
    print_summary(results, runs=runs)
    print("more: vm-eval results --wide (every metric) | vm-eval leaderboard | vm-eval report --out report.html")
    return 1 if failed else 0


DEMO_TRAIN_STEPS = 30  # per stage: enough to show both stages and the loss falling; the backbone is random anyway


def _demo_vidmusician(args, data: Path):
    """Train the tiny preset briefly on the demo train split (resumes/skips when done), then run it on test."""
    from vm_eval.models.vidmusician import DEMO_RUN, TRAIN_DIR
    from vm_eval.runner import RunConfig, execute
    from vm_eval.train.command import TrainRequest, run_training

    results = paths.results_dir(args.results)
    print("== vidmusician-tiny-random: train the tiny preset (random backbone) on demo/train, both stages",
          file=sys.stderr)
    result, out = run_training(TrainRequest(preset="tiny", data="demo", split="train", out=results / TRAIN_DIR / DEMO_RUN,
                                            steps=DEMO_TRAIN_STEPS, results=results, data_dir=data,
                                            progress=not args.quiet))
    _print_training(result, out)
    outcome = execute(RunConfig(model="vidmusician-tiny-random", split="test", dataset="demo", results=results,
                                data=data, seed=args.seed, limit=args.limit, progress=not args.quiet))
    _print_outcome(outcome, not_run_note=False)
    return outcome


def _split_names(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def _with_latest_study(records, results: Path):
    """Records with the newest registered listening study's preference (question "overall") added."""
    from studies.results import list_studies
    from vm_eval.summary import add_study

    studies = [s for s in list_studies(results) if "error" not in s]
    if not studies:
        return records
    return add_study(records, max(studies, key=lambda s: str(s.get("registered", ""))))


def print_summary(results: Path, metrics=None, nulls: bool = False, sort=None, width: int = 100,
                  runs=None) -> int:
    """The summary table(s) of the stored runs (or `runs`); damaged runs are reported on stderr. Returns their
    count."""
    from vm_eval.results import summary_tables
    from vm_eval.summary import load_records

    records, damaged = load_records(results, runs=runs)
    print(summary_tables(_with_latest_study(records, results), metrics, nulls, sort, width))
    for e in damaged:
        print(e.report(), file=sys.stderr)
    return len(damaged)


def cmd_results(args) -> int:
    from vm_eval.results import format_csv, format_json, format_table, list_runs

    results = paths.results_dir(args.results)
    rows, damaged = list_runs(results)
    if args.format != "table" or args.wide:
        print({"table": format_table, "json": format_json, "csv": format_csv}[args.format](rows).rstrip("\n"))
        for e in damaged:
            print(e.report(), file=sys.stderr)
    else:
        print_summary(results, _split_names(args.metrics), args.nulls, args.sort, args.width)
    if args.format == "table":
        from studies.results import format_studies, list_studies
        from vm_eval.ablate.report import format_report
        from vm_eval.ablate.groups import list_groups

        for group in list_groups(results):
            if group.get("report"):
                order = list(group["variants"])
                print(f"\nablation {group['grid']['name']} ({group['preset']}, {group['status']}): {group['folder']}")
                print(format_report(group["report"], order))
        studies = format_studies(list_studies(results), {r["run_id"]: r for r in rows})
        if studies:
            print(studies)
    return 1 if damaged else 0


def leaderboard_command(host: str, port: int) -> list[str]:
    """The `streamlit run` command line of the leaderboard app (headless: no browser is opened, no telemetry)."""
    app = Path(__file__).resolve().parents[1] / "leaderboard" / "app.py"
    return [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true", "--server.address",
            host, "--server.port", str(port), "--browser.gatherUsageStats", "false", "--server.fileWatcherType",
            "none", "--client.toolbarMode", "viewer"]  # viewer: no Deploy button, no developer menu


def cmd_leaderboard(args) -> int:
    import importlib.util
    import os

    from vm_eval.procs import run_child

    if importlib.util.find_spec("streamlit") is None:
        raise MissingPackage("the leaderboard needs Streamlit: pip install streamlit (scripts/install.sh installs it)")
    results = paths.results_dir(args.results)
    if not results.is_dir():
        raise UserFileNotFound(f"no results folder at {results}: run `make demo` or pass --results DIR")
    print(f"leaderboard of {results}: http://{args.host}:{args.port}/  (Ctrl-C stops it)", flush=True)
    env = {**os.environ, "VM_EVAL_RESULTS": str(results.resolve())}
    # Streamlit is a child process: stopping or killing this one must stop it too.
    return run_child(leaderboard_command(args.host, args.port), env=env)


def cmd_report(args) -> int:
    from vm_eval.report import write_report
    from vm_eval.results import resolve_runs
    from vm_eval.store.run import RunStore

    results = paths.results_dir(args.results)
    if not results.is_dir():
        raise UserFileNotFound(f"no results folder at {results}: run `make demo` or pass --results DIR")
    runs = resolve_runs(args.runs, RunStore(results)) if args.runs else None
    out = write_report(results, args.out, runs, _split_names(args.metrics), args.study)
    print(f"report: {out} ({out.stat().st_size / 1024:.0f} KiB, self-contained: open it in any browser)")
    return 0


def cmd_compare(args) -> int:
    from vm_eval.results import compare_runs
    from vm_eval.store.run import RunStore

    from vm_eval.results import resolve_runs

    store = RunStore(paths.results_dir(args.results))
    a, b = resolve_runs([args.run_a, args.run_b], store, args.split)
    diffs = compare_runs(a, b)
    if not diffs:
        print("the two runs share no scored clips with the same metric identity")
        return 0
    print(f"A = {a.meta().get('model')} ({a.dir.name}), B = {b.meta().get('model')} ({b.dir.name}); mean(A - B) "
          "over clips both scored, 95% paired bootstrap CI")
    direction = {m: agg.get("higher_is_better") for m, agg in a.meta().get("aggregates", {}).items()}
    for m, d in diffs.items():
        # descriptive metrics (loudness) have no better side: a difference there is never starred
        sig = "*" if direction.get(m) is not None and (d["lo"] > 0 or d["hi"] < 0) else " "
        arrow = {True: "↑", False: "↓"}.get(direction.get(m), " ")
        print(f"  {m:<24} {arrow} {d['mean']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}] {sig} n={d['n']}"
              f"  (only in A: {d['clips_a_only']}, only in B: {d['clips_b_only']})")
    print("* = the 95% CI of the difference excludes 0 (not corrected for multiple metrics); ↑/↓ higher/lower "
          "is better; metrics without an arrow are descriptive and never starred")
    return 0


def _availability_lines(registry) -> None:
    for e in registry.entries():
        ok, why = e.availability()
        needs = ", ".join([*e.packages, *(f"weights:{w}" for w in e.weights)]) or "nothing extra"
        if e.extra.get("external"):
            from baselines.external.check import check

            needs = f"its upstream checkout, environment and checkpoints (`vm-eval baselines check {e.name}`)"
            try:
                ok, why = check([e.name])[0].ready, ""
            except ImportError as exc:  # an adapter module missing from this installation
                ok, why = False, str(exc)
        state = "ok " if ok else "NO "
        print(f"{state} {e.name:<20} {e.summary}\n      needs: {needs}" + (f"; {why}" if why else ""))


def cmd_train(args) -> int:
    from vm_eval.train.command import TrainRequest, run_training

    req = TrainRequest(preset=args.preset, data=args.dataset, split=args.split, stage=args.stage,
                       out=Path(args.out) if args.out else None, steps=args.steps, overrides=parse_kv(args.override),
                       init_from=Path(args.init_from) if args.init_from else None, results=args.results,
                       data_dir=args.datasets, device=args.device, progress=not args.quiet)
    result, out = run_training(req)
    _print_training(result, out)
    return 0


def _print_training(result, out) -> None:
    for stage, losses in result.losses.items():
        if losses:
            print(f"stage {stage}: {len(losses)} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    print(f"checkpoint: {result.checkpoint}")
    print(f"use it: vm-eval run --model vidmusician --model-args checkpoint={out}")


def cmd_ablate(args) -> int:
    from vm_eval.metric_sets import expand_metric_names
    from vm_eval.ablate.run import AblateRequest, run_ablation

    split = lambda text: [x.strip() for x in text.split(",") if x.strip()] if text else None  # noqa: E731
    out = run_ablation(AblateRequest(
        grid=Path(args.grid) if args.grid else None, preset=args.preset, data=args.dataset, split=args.split,
        train_split=args.train_split, variants=split(args.variants), steps=args.steps,
        metrics=expand_metric_names(args.metrics),
        seed=args.seed, limit=args.limit, results=args.results, data_dir=args.datasets, device=args.device,
        jobs=args.jobs, progress=not args.quiet, executor=args.executor, ray_address=args.ray_address))
    print(out.table)
    total = sum(t["train_s"] + t["run_s"] for t in out.timings.values())
    print(f"ablation group: {out.folder} ({total:.0f} s this call; report.json, report.csv there)")
    return 1 if out.failed else 0


def cmd_model_info(args) -> int:
    from vidmusician.config import preset
    from vidmusician.params import format_breakdown, parameter_breakdown

    cfg = preset(args.preset)
    overrides = parse_kv(args.override)
    if overrides:
        cfg = cfg.with_overrides(overrides)
    print(f"VidMusician, preset {args.preset}" + (f", overrides {overrides}" if overrides else ""))
    from vidmusician.params import PAPER_TRAINABLE

    breakdown = parameter_breakdown(cfg)
    print(format_breakdown(breakdown))
    trainable = breakdown["total"][1] if "total" in breakdown else sum(t for _, t in breakdown.values())
    print(f"trainable {trainable:,} vs the paper's {PAPER_TRAINABLE:,}: {100 * (trainable / PAPER_TRAINABLE - 1):+.2f}%")
    return 0


def cmd_models(args) -> int:
    from vm_eval.registries import MODELS

    _availability_lines(MODELS)
    return 0


def cmd_metrics(args) -> int:
    from metrics.base import extractor_identity
    from vm_eval.media import RESAMPLER
    from vm_eval.metric_sets import SET_PREFIX, SETS, describe_set
    from vm_eval.registries import METRICS
    from vm_eval.scoring.resolve import build

    if args.set:
        print(describe_set(args.set))
        return 0
    for e in METRICS.entries():
        ok, why = e.availability()
        needs = ", ".join([*e.packages, *(f"weights:{w}" for w in e.weights)]) or "nothing extra"
        print(f"{'ok ' if ok else 'NO '} {e.name:<30} {e.summary}\n      needs: {needs}"
              + ("" if ok else f"; cannot run here: {why}"))
        if not ok:
            continue
        try:
            bound = build(e)  # loads its backbone, if any: the identity shown is the one scores will carry
        except Exception as exc:
            print(f"      cannot build here: {type(exc).__name__}: {exc}")
            continue
        info, inputs = bound.info, bound.inputs
        arrow = {True: "higher is better", False: "lower is better", None: "descriptive"}[info.higher_is_better]
        rate = "" if inputs else (f", {info.sample_rate} Hz" if info.sample_rate else ", native rate")
        print(f"      v{info.version} {info.kind}-level, {info.units or 'unitless'}, {arrow}{rate}"
              f"{', mono' if info.mono else ''}{', needs reference' if info.needs_reference else ''}"
              f"{', NON-STANDARD stand-in' if not info.standard else ''}; key {info.key(RESAMPLER, inputs or None)}")
        for k, ext in sorted(inputs.items()):
            ident = extractor_identity(ext)
            print(f"      input {k}: {ident['name']} v{ident['version']}"
                  + (f" @ {ident['sample_rate']} Hz" if ident.get("sample_rate") else "")
                  + (f" @ {ident['fps']:g} fps" if ident.get("fps") else "")
                  + (f", backbone {ident['backbone']}" if ident.get("backbone") else ""))
    print(f"metric sets matching published tables: {', '.join(SETS)} (`vm-eval metrics --set NAME` lists one; "
          f"`vm-eval run --metrics {SET_PREFIX}NAME` runs it)")
    return 0


def cmd_weights(args) -> int:
    if args.weights_command == "download":
        from vm_eval.weights_download import download, resolve

        return download(resolve(args.names, args.for_names, args.all), dry_run=args.dry_run)
    import os

    from vm_eval.weights import KNOWN, LOCK_FILE, env_var, how_to_get, locate, weights_root

    print(f"weights folder {weights_root()}; what `vm-eval weights download` fetched is verified against "
          f"{weights_root() / LOCK_FILE}")
    changed = 0
    for name, ck in KNOWN.items():
        loc = locate(name, verify=True)  # hashes the weights folder's recorded files (once per process)
        if loc.changed:
            changed += 1
            state = f"CHANGED, refused: {loc.changed}"
        elif loc.path is None:
            state = "absent"
        else:
            state = f"present ({loc.via}: {loc.path}), " + (
                "verified: sha256 matches the lock" if loc.verified else "not verified: no sha256 recorded for it")
        print(f"{name:<20} {ck.role}; licence {ck.licence or 'not stated'}\n      files: {', '.join(ck.files)}; {state}")
        unset = [] if os.environ.get(env_var(name)) else [f"${env_var(name)} (not set)"]
        print(f"      looked in: {'; '.join(unset + loc.searched)}")
        if not loc.path and not loc.changed:
            print(f"      get it: {how_to_get(name)}")
    return 1 if changed else 0


def cmd_baselines(args) -> int:
    from baselines.external.check import check, format_check
    from baselines.external.config import find_config_file

    statuses = check(args.systems or None, args.config)
    print(format_check(statuses, find_config_file(args.config), verbose=not args.brief))
    return 0 if all(s.ready for s in statuses) else 1


def cmd_data(args) -> int:
    return {"demo": _data_demo, "build": _data_build, "check": _data_check}[args.data_command](args)


def _data_demo(args) -> int:
    from vm_eval.data.demo import make_demo

    out = Path(args.out) if args.out else paths.data_dir() / "demo"
    print(make_demo(out, force=args.force))
    return 0


def _data_build(args) -> int:
    from vm_eval.data.build import build_dataset, parse_split_ratios

    ratios = parse_split_ratios(args.split_ratios) if args.split_ratios is not None else None
    report = build_dataset(args.video_dir, args.out, source=args.source, with_reference=not args.no_reference,
                           categories_csv=args.categories, max_clip_s=args.max_clip_seconds, split=args.split,
                           split_ratios=ratios, window_s=args.window, hop_s=args.hop,
                           window_tolerance_s=args.window_tolerance, cache=paths.cache_dir(paths.results_dir()))
    splits = {}
    for c in report.clips:
        splits[c.split] = splits.get(c.split, 0) + 1
    print(f"wrote {report.manifest}: {len(report.clips)} clips ({', '.join(f'{k} {v}' for k, v in sorted(splits.items()))})")
    for f, why in report.skipped:
        print(f"  skipped {f}: {why}", file=sys.stderr)
    return 0


def _data_check(args) -> int:
    from vm_eval.data.check import check_manifest, format_problems

    target = args.manifest
    if not Path(target).exists():
        from vm_eval.data import resolve_dataset

        target = resolve_dataset(target, paths.data_dir(args.datasets)).path
    manifest, problems = check_manifest(target, decode=not args.no_decode,
                                        cache=paths.cache_dir(paths.results_dir()))
    if problems:
        print(format_problems(problems))
        return 1
    print(f"{target}: {len(manifest.clips)} clips, no problems")
    return 0


def cmd_study(args) -> int:
    return {"create": _study_create, "serve": _study_serve, "analyze": _study_analyze,
            "agree": _study_agree}[args.study_command](args)


def _study_analyze(args) -> int:
    from studies.analyze import AnalyzeRequest, analyze_study, format_report

    settings = {"ties": args.ties, "resamples": args.resamples, "seed": args.seed, "cluster": args.cluster,
                "exclusion": {"min_accuracy": args.min_catch_accuracy, "min_catch_trials": args.min_catch_trials}}
    res = analyze_study(AnalyzeRequest(Path(args.study_dir), db=args.db, out=Path(args.out) if args.out else None,
                                       settings=settings, plots=not args.no_plots,
                                       results=Path(args.results) if args.results else None))
    print(format_report(res.report, args.question))
    print(f"tables, plots and summary: {res.out}")
    print(f"summary registered for `vm-eval results` and the leaderboard: {res.registered}")
    return 0


def _study_agree(args) -> int:
    from studies.agree import AgreeRequest, agree_study, format_agreement

    settings = {"resamples": args.resamples, "seed": args.seed, "cluster": args.cluster,
                "exclusion": {"min_accuracy": args.min_catch_accuracy, "min_catch_trials": args.min_catch_trials}}
    res = agree_study(AgreeRequest(Path(args.study_dir), db=args.db, out=Path(args.out) if args.out else None,
                                   settings=settings, plots=not args.no_plots,
                                   results=Path(args.results) if args.results else None))
    print(format_agreement(res))
    print(f"tables and plots: {res.out}")
    print(f"added to the leaderboard entry: {res.registered}" if res.registered else
          "not in the leaderboard yet: run `vm-eval study analyze` first, then `vm-eval study agree` again")
    return 0


def _study_create(args) -> int:
    from studies.create import CreateRequest, create_study, format_summary

    result = create_study(CreateRequest(
        runs=args.runs, out=Path(args.out), split=args.split, config=Path(args.config) if args.config else None,
        results=paths.results_dir(args.results), raters=args.raters, trials_per_rater=args.trials_per_rater,
        catch_rate=args.catch_rate, allow_ties=args.allow_ties, min_listen_s=args.min_listen, seed=args.seed,
        force=args.force, progress=not args.quiet))
    print(format_summary(result))
    return 0


def _study_serve(args) -> int:
    import os

    import uvicorn

    from studies.server import create_app, default_db_url
    from studies.server.workers import FACTORY, check_workers, worker_env

    token = args.admin_token or os.environ.get("VM_EVAL_STUDY_ADMIN_TOKEN") or None
    db = args.db or default_db_url(args.study_dir)
    check_workers(db, args.workers)
    app = create_app(args.study_dir, db_url=db, admin_token=token)  # checks the study, creates the tables once
    study = app.state.ctx.study
    host = f"[{args.host}]" if ":" in args.host else args.host
    base = f"http://{host}:{args.port}"
    print(f"serving study {study.dir} ({study.n_slots} rater slots x {study.design.trials_per_rater} trials, "
          f"manifest {study.manifest_sha256[:12]})")
    print(f"votes database: {app.state.ctx.repo.engine.url.render_as_string(hide_password=True)}")
    print(f"rater URL: {base}/   (own ids: {base}/?rater=ID; Prolific: "
          f"{base}/?PROLIFIC_PID=..&STUDY_ID=..&SESSION_ID=.., see README)")
    print(f"admin token: {app.state.admin_token}"
          + ("" if token else "  (fresh for this start; set VM_EVAL_STUDY_ADMIN_TOKEN or --admin-token to keep one)"))
    print(f"admin: {base}/admin/progress, {base}/admin/export?format=csv  (token in a header only: 'Authorization: Bearer TOKEN' or 'X-Admin-Token: TOKEN')",
          flush=True)
    # On SIGTERM uvicorn waits for open requests, by default forever (a rater's stalled upload held it); after 3 s
    # they are cancelled and the server stops.
    if args.workers == 1:  # in this process: no child to leave behind
        uvicorn.run(app, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=3)
        return 0
    # Several workers: uvicorn's supervisor starts each from the factory's import string, with the same database
    # and admin token; on SIGTERM it stops them all before it exits.
    app.state.ctx.repo.engine.dispose()
    os.environ.update(worker_env(str(study.dir), db, app.state.admin_token))
    print(f"workers: {args.workers} processes on {app.state.ctx.repo.engine.url.get_backend_name()}", flush=True)
    uvicorn.run(FACTORY, factory=True, workers=args.workers, host=args.host, port=args.port, log_level="info",
                timeout_graceful_shutdown=3)
    return 0
