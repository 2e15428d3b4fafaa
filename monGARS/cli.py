"""The ``mongars`` command and the runbook's ``mongars_multistage_pipeline.py`` flags.

``mongars run`` runs the pipeline locally (kfp.local, caching on) on the embedded tiny model by
default; ``mongars compile`` writes the pipeline YAML; ``submit``/``schedule``/``preflight`` talk
to a cluster. User mistakes print one ``error:`` line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from monGARS.mlops.errors import MongarsError, describe_write_error
from monGARS.mlops.parameters import PARAMETERS
from monGARS.pipelines.compile import COMPILED_PIPELINE

DEFAULT_RUN_ID = "demo"
DEFAULT_RUNS_ROOT = "runs"
# Stage flags: the furthest one given sets how far the DAG runs. --raft is not one of them: as in
# the runbook, it turns the optional RAFT stage on for whatever the DAG reaches.
STAGE_FLAGS = ("build_datasets", "sft", "llm2vec", "export")


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _read_json_config(flag: str, path: str) -> dict[str, Any]:
    from monGARS.mlops.configs import read_config_file

    try:
        return read_config_file(path)
    except MongarsError as error:
        raise MongarsError(f"{flag}: {error}") from None


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The runbook's flags (kept as they were) plus a few for the new stages."""
    where = parser.add_argument_group("run")
    where.add_argument("--run-id", default=DEFAULT_RUN_ID, help="folder name under --runs-root")
    where.add_argument("--runs-root", default=DEFAULT_RUNS_ROOT, help="where runs are kept")
    where.add_argument("--config", help="YAML/JSON file of pipeline parameters (flags win)")
    where.add_argument("--hf-token", help="Hugging Face token (prefer the HF_TOKEN variable)")
    where.add_argument(
        "--repo-root",
        help="source tree (folder, archive or gs:// URI) whose static analysis gives the "
        "per-module datasets; default: the installed monGARS package",
    )
    where.add_argument("--llm2vec-root", help=argparse.SUPPRESS)
    stages = parser.add_argument_group("stages (the furthest one given sets how far the DAG runs)")
    for stage in STAGE_FLAGS:
        stages.add_argument(f"--{stage.replace('_', '-')}", action="store_true")
    stages.add_argument(
        "--raft",
        action=argparse.BooleanOptionalAction,
        help="turn the optional RAFT stage on (--no-raft: off again on a run that had it on)",
    )
    params = parser.add_argument_group("pipeline parameters (monGARS.mlops.parameters)")
    for parameter in PARAMETERS:
        if parameter.flag:
            params.add_argument(
                parameter.option,
                type=_FLAG_TYPES[parameter.type],
                metavar=_FLAG_METAVARS.get(parameter.type, parameter.type.__name__.upper()),
                help=f"{parameter.help} (pipeline default: {_default_text(parameter)})",
            )


# How a flag's text becomes the parameter's value (dicts are JSON/YAML files, read later so the
# error can name the flag).
_FLAG_TYPES: dict[type, Callable[[str], Any]] = {
    str: str,
    int: int,
    float: float,
    list: _comma_list,
    dict: str,
}
_FLAG_METAVARS = {list: "A,B", dict: "FILE", str: "TEXT"}


def _default_text(parameter: Any) -> str:
    if parameter.type is list:
        return ",".join(parameter.default) or "none"
    if parameter.type is dict:
        return "none"
    return str(parameter.default) if parameter.default != "" else "''"


def given_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The pipeline parameters this command names: a config file, then flags (flags win).

    Never includes secrets; ``--repo-root`` and ``run_name`` are added by
    :func:`run_parameters`, onto what the run carries over.
    """
    parameters: dict[str, Any] = _read_json_config("--config", args.config) if args.config else {}
    for parameter in PARAMETERS:
        value = getattr(args, parameter.name, None) if parameter.flag else None
        if value is None:
            continue
        if parameter.type is dict:
            value = _read_json_config(parameter.option, value) if value else {}
        parameters[parameter.name] = value
    if args.raft is not None:
        parameters["raft"] = args.raft
    parameters.setdefault("run_name", args.run_id)
    return parameters


# The datasets_config keys --repo-root sets.
CODE_ROOT_KEYS = ("code_roots", "code_roots_digest")


def run_parameters(
    args: argparse.Namespace, recorded: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """This command's pipeline parameters and, apart, those carried over from ``recorded``.

    ``recorded``: the parameters of the run's previous command (``state.json``); every declared
    parameter this command does not give keeps its recorded value. ``--repo-root`` then replaces
    the source tree in whatever datasets config that gives (its other keys stay).
    """
    from monGARS.mlops.state import carry_over

    parameters, carried = carry_over(recorded or {}, given_parameters(args))
    if args.repo_root:
        datasets_config = dict(parameters.get("datasets_config") or {})
        root = code_root_from_flag(args.repo_root)
        datasets_config["code_roots"] = [root]
        datasets_config["code_roots_digest"] = source_tree_digest(root)
        parameters["datasets_config"] = datasets_config
        kept = {
            key: value
            for key, value in (carried.pop("datasets_config", None) or {}).items()
            if key not in CODE_ROOT_KEYS
        }
        if kept:
            carried["datasets_config"] = kept
    return parameters, carried


def parameters_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Pipeline parameters from a config file and flags (flags win), nothing carried over."""
    return run_parameters(args)[0]


def code_root_from_flag(value: str) -> str:
    """``--repo-root``: the source tree to mine, as an absolute path (or a ``gs://`` URI).

    It fills the build_datasets config's ``code_roots``; a local tree must exist, so a typo stops
    the run before anything starts instead of mining nothing.
    """
    if "://" in value:
        return value
    root = Path(value).expanduser()
    if not root.exists():
        raise MongarsError(
            f"--repo-root: {value} does not exist; give the source tree to mine "
            "(a folder, a .tar.gz/.zip archive or a gs:// URI), e.g. --repo-root ."
        )
    return str(root.resolve())


def source_tree_digest(root: str) -> str:
    """A digest of what the code miner reads under a local ``--repo-root`` ("" for ``gs://``,
    which resolve_sources resolves on every run from its object generations)."""
    if "://" in root:
        return ""
    from monGARS.mlops.sources import code_root_revision

    return code_root_revision(root)


def last_stage_from_args(args: argparse.Namespace) -> str:
    chosen = [stage for stage in STAGE_FLAGS if getattr(args, stage)]
    if not chosen:
        return "report"
    furthest = chosen[-1]
    return "report" if furthest == "export" else furthest


def _shown(path: str | Path) -> str:
    from monGARS.deploy.local_run import shown_path

    return shown_path(path)


def _print_result(result: Any) -> None:
    outputs = result.outputs or {}
    ran, cached = len(result.executed), len(result.cached)
    print(
        f"run finished in {result.wall_seconds:.0f}s: {ran} task{'s' if ran != 1 else ''} ran, "
        f"{cached} from the cache"
    )
    run_dir = Path(result.run_dir)
    if outputs.get("report"):
        print(f"  report   {_shown(run_dir / 'report.html')}")
    modules = sorted(outputs.get("modules", {}))
    if modules:
        views = f"{_shown(run_dir)}/<module>/{{adapter,mntp,simcse,gguf}}"
        print(f"  modules  {', '.join(modules)}: {views}")
    if any(outputs.get("modules", {}).get(name, {}).get("gguf_files") for name in modules):
        print(f"  GGUF     {_shown(run_dir)}/<module>/gguf/")
    print(
        f"  datasets {_shown(run_dir / 'french_datasets')}, {_shown(run_dir / 'internal_datasets')}"
    )
    print(f"  state    {_shown(result.state_file)}")
    if result.logs_dir is not None:
        hidden = getattr(result, "warnings_hidden", 0)
        more = f" ({hidden} more distinct warnings there)" if hidden else ""
        print(f"  logs     {_shown(result.logs_dir)}/{more}")
    promotion = outputs.get("promotion") or {}
    if promotion.get("lines"):
        # Last, where a nightly user looks: what was published, what was rejected and why.
        print(f"promotion (champion registry {promotion.get('registry') or 'none'}):")
        for line in promotion["lines"]:
            print(f"  {line}")


def _prepare_state(args: argparse.Namespace) -> dict[str, Any]:
    """The run's ``state.json`` before a command: ``{}`` for a new run id.

    ``--build-datasets`` rebuilds a run whose state cannot be read (the file is moved aside, as
    the error for an unreadable state advises); otherwise an unreadable state stops the command
    here, before anything runs.
    """
    from monGARS.mlops.names import check_safe_name
    from monGARS.mlops.state import load_state, set_aside_unreadable_state, state_path

    check_safe_name("run_id", args.run_id)
    run_dir = _run_dir(args)
    if args.build_datasets:
        aside = set_aside_unreadable_state(run_dir)
        if aside is not None:
            print(
                f"notice: {_shown(state_path(run_dir))} could not be read; moved to {aside.name}, "
                "this run writes a new one (nothing is carried over from it)",
                file=sys.stderr,
            )
    return load_state(run_dir)


def _readable_state(args: argparse.Namespace) -> dict[str, Any]:
    """The run's state for a command that writes nothing: ``{}`` where ``--build-datasets`` would
    set an unreadable one aside."""
    from monGARS.mlops.names import check_safe_name
    from monGARS.mlops.state import load_state

    check_safe_name("run_id", args.run_id)
    try:
        return load_state(_run_dir(args))
    except MongarsError:
        if args.build_datasets:
            return {}
        raise


def _run_dir(args: argparse.Namespace) -> Path:
    return Path(args.runs_root).resolve() / args.run_id


def _state_notices(args: argparse.Namespace, state: dict[str, Any], last_stage: str) -> None:
    """What a command is about to change in its run, said before it starts.

    A later stage on a run id without a state builds the datasets first. A command whose DAG
    stops before stages the run already reached resets those stages' views (the runbook's
    folders and ``current_model_dir``): ``--build-datasets`` on an existing run, the runbook's
    recovery step, says what it resets.
    """
    from monGARS.mlops.run_layout import views_left_out
    from monGARS.mlops.stages import STAGE_ORDER

    stage_given = any(getattr(args, stage) for stage in STAGE_FLAGS)
    if not state:
        if stage_given and not args.build_datasets:
            print(
                f"notice: run {args.run_id} has no state.json yet; its datasets are built first "
                "(as --build-datasets would)",
                file=sys.stderr,
            )
        return
    stages_run = STAGE_ORDER[: STAGE_ORDER.index(last_stage) + 1]
    left_out = views_left_out(state.get("layout_links") or [], stages_run)
    if not left_out and not args.build_datasets:
        return
    given = [stage for stage in STAGE_FLAGS if getattr(args, stage)]
    command = f"--{given[-1].replace('_', '-')}" if given else "this command"
    if left_out:
        views = sorted({view for names in left_out.values() for view in names})
        following = STAGE_FLAGS[STAGE_FLAGS.index(last_stage) + 1]
        said = (
            f"resets the {'/'.join(views)} views and current_model_dir of "
            f"{', '.join(sorted(left_out))} (--{following.replace('_', '-')} and later stages "
            "make them again, from the cache where nothing changed)"
        )
    else:
        said = "has no later stage's views to reset"
    if args.build_datasets:
        said += "; the datasets come from the cache unless their parameters changed"
    print(
        f"notice: {command} on run {args.run_id} {said}; the run's parameters carry over",
        file=sys.stderr,
    )


def run_command(args: argparse.Namespace, *, require_base_model: bool) -> int:
    from monGARS.deploy.local_run import run_local
    from monGARS.mlops.state import recorded_parameters

    if args.llm2vec_root:
        print(
            "notice: --llm2vec-root is no longer needed (llm2vec runs in-process); ignored",
            file=sys.stderr,
        )
    last_stage = last_stage_from_args(args)
    state = _prepare_state(args)
    parameters, carried = run_parameters(args, recorded_parameters(state))
    if require_base_model:
        _check_base_model(args, parameters, carried, last_stage)
    _state_notices(args, state, last_stage)
    result = run_local(
        args.run_id,
        parameters,
        runs_root=args.runs_root,
        last_stage=last_stage,
        hf_token=args.hf_token,
        carried_over=carried,
    )
    _print_result(result)
    return 0


def _check_base_model(
    args: argparse.Namespace, parameters: dict[str, Any], carried: dict[str, Any], last_stage: str
) -> None:
    """The runbook's rule: ``--base-model`` is given on ``--sft`` and ``--export`` lines; any other
    command that trains takes the one the run's state names, and needs it only when there is none.
    """
    how = "give a hub id, a model folder, a gs:// URI, or 'tiny' for the embedded test model"
    if (args.sft or args.export) and "base_model" in carried:
        raise MongarsError(
            f"--base-model: required for --sft and --export, as in the runbook; run "
            f"{args.run_id} used {carried['base_model']} (--base-model {carried['base_model']} "
            "keeps it); or " + how
        )
    if last_stage != "build_datasets" and not parameters.get("base_model"):
        names = "--sft and --export" if args.sft or args.export else "a stage that trains"
        raise MongarsError(
            f"--base-model: required for {names}; run {args.run_id}'s state names none yet; {how}"
        )


def compile_command(args: argparse.Namespace) -> int:
    from monGARS.components.images import ALL_IMAGES, uncommitted_image_sources
    from monGARS.pipelines.compile import BackendRuleError, compile_pipeline, is_up_to_date
    from monGARS.pipelines.options import PipelineOptions

    output = Path(args.output)
    if args.check:
        if is_up_to_date(output):
            print(f"{output} is up to date")
            return 0
        print(f"error: {output} is stale; run `make compile`", file=sys.stderr)
        return 1
    options = PipelineOptions(
        accelerator_type=args.accelerator_type,
        accelerator_count=args.accelerator_count,
        parallelism=args.parallelism,
        gpu_retry_window_hours=args.gpu_retry_window_hours,
        image_pull_secrets=tuple(args.image_pull_secret or ()),
    )
    if problems := options.problems():
        raise MongarsError("compile: " + "; ".join(problems))
    try:
        compile_pipeline(output, options)
    except BackendRuleError as error:
        raise MongarsError(f"compile: {error}") from None
    print(f"wrote {output}")
    print("images: " + ", ".join(sorted(ALL_IMAGES.values())))
    if changed := uncommitted_image_sources():
        print(
            f"note: the image tag covers {len(changed)} uncommitted change(s) "
            f"({', '.join(changed[:3])}{', ...' if len(changed) > 3 else ''}); "
            "build and push the images from this tree (`make push-images`) before submitting",
            file=sys.stderr,
        )
    return 0


def _pipeline_option_defaults() -> Any:
    from monGARS.pipelines.options import PipelineOptions

    return PipelineOptions()


def build_tiny_command(args: argparse.Namespace) -> int:
    from monGARS.mlops.tiny_model import build_tiny_model

    print(build_tiny_model(args.output))
    return 0


def validate_command(args: argparse.Namespace) -> int:
    """Check every stage config the command would run with (carried-over values included)."""
    from monGARS.mlops.stages import resolve_local_parameters, validate_parameters
    from monGARS.mlops.state import recorded_parameters

    state = _readable_state(args)
    parameters, carried = run_parameters(args, recorded_parameters(state))
    last_stage = last_stage_from_args(args)
    validate_parameters(resolve_local_parameters(parameters), last_stage)
    print(json.dumps({"valid": True, "last_stage": last_stage, "carried_over": sorted(carried)}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mongars", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the pipeline locally (kfp.local, cached)")
    add_run_arguments(run)
    run.set_defaults(handler=lambda a: run_command(a, require_base_model=False))
    validate = commands.add_parser("validate", help="check every stage config, run nothing")
    add_run_arguments(validate)
    validate.set_defaults(handler=validate_command)
    compile_parser = commands.add_parser("compile", help="compile the pipeline to YAML")
    compile_parser.add_argument("--output", default=str(COMPILED_PIPELINE))
    compile_parser.add_argument("--check", action="store_true", help="fail if the YAML is stale")
    defaults = _pipeline_option_defaults()
    compile_parser.add_argument(
        "--accelerator-type",
        default=defaults.accelerator_type,
        help="extended resource each GPU task requests (default: %(default)s)",
    )
    compile_parser.add_argument(
        "--accelerator-count",
        type=int,
        default=defaults.accelerator_count,
        help="GPUs per GPU task (default: %(default)s)",
    )
    compile_parser.add_argument(
        "--parallelism",
        type=int,
        default=defaults.parallelism,
        help="modules trained at once; 0 = all (default: %(default)s)",
    )
    compile_parser.add_argument(
        "--gpu-retry-window-hours",
        type=int,
        default=defaults.gpu_retry_window_hours,
        help="how long after a GPU task first started its retries may still start and run, "
        "training included (default: %(default)s)",
    )
    compile_parser.add_argument(
        "--image-pull-secret",
        action="append",
        metavar="SECRET",
        help="dockerconfigjson Secret every pod pulls the images with (private registry); "
        "repeat for several",
    )
    compile_parser.set_defaults(handler=compile_command)
    tiny = commands.add_parser("build-tiny-model", help="write the embedded tiny model")
    tiny.add_argument("output")
    tiny.set_defaults(handler=build_tiny_command)
    from monGARS.deploy.champion_cli import add_champion_subcommand

    add_champion_subcommand(commands)
    try:
        from monGARS.deploy.cli import add_deploy_subcommands
    except ImportError:
        pass
    else:
        add_deploy_subcommands(commands)
    return parser


def _run(handler: Any, args: argparse.Namespace) -> int:
    try:
        return int(handler(args) or 0)
    except MongarsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        message = describe_write_error(error)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume from the cache", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return _run(args.handler, args)


def build_runbook_parser() -> argparse.ArgumentParser:
    """The parser of ``mongars_multistage_pipeline.py``: the runbook's flags, as printed there."""
    parser = argparse.ArgumentParser(
        prog="mongars_multistage_pipeline.py",
        description="Run monGARS stages locally; stage flags pick how far the DAG runs and "
        "unchanged upstream stages come from the cache.",
    )
    add_run_arguments(parser)
    return parser


def runbook_main(argv: Sequence[str] | None = None) -> int:
    """``mongars_multistage_pipeline.py``: the original runbook's command line."""
    args = build_runbook_parser().parse_args(argv)
    return _run(lambda a: run_command(a, require_base_model=True), args)


if __name__ == "__main__":
    sys.exit(main())
