"""The monGARS pipeline: resolve sources, fetch + build_datasets, then per module sft -> llm2vec
-> [raft] -> merge -> export -> evaluate, then promote (the gate and the champion registry) and
one report.

``build_pipeline(last_stage, options)`` builds the DAG up to a stage (the runbook's stage flags);
the compiled, committed YAML is the full pipeline, and ``kfp.local`` runs that same definition.
Every task but ``resolve_sources`` is cached, so running again with the same inputs resumes:
finished stages are cache hits. ``resolve_sources`` runs every time and turns what lies outside
(hub revisions, ``gs://`` generations, file digests) into parameters of the cached tasks, so a
moved source re-runs exactly what reads it (monGARS.mlops.sources).

RAFT sits under ``dsl.If(raft)``: with ``raft=false`` no GPU task runs for it (a tiny CPU
``raft_off`` task stands in). merge_adapter, outside the condition, takes the SFT adapter and
a parameter ``dsl.OneOf`` naming raft's adapter when it ran (monGARS.mlops.handoff says why a
parameter, not an artifact: KFP backends before 2.17 resolve an artifact OneOf wrongly).
The report reads each stage's small summary artifact only, never models or GGUF files.

The pipeline's parameters are not written here: its signature is built from the declaration in
``monGARS.mlops.parameters`` (a stdlib-only module), and each stage task receives the parameters
that declaration assigns to its stage.
"""

import inspect
from collections.abc import Callable
from typing import Any

from kfp import dsl

from monGARS.components.build_datasets import build_datasets
from monGARS.components.evaluate import evaluate
from monGARS.components.export import export
from monGARS.components.fetch_base_model import fetch_base_model
from monGARS.components.images import CPU_IMAGE
from monGARS.components.llm2vec import llm2vec
from monGARS.components.merge_adapter import merge_adapter
from monGARS.components.promote import promote
from monGARS.components.raft import raft as raft_component
from monGARS.components.raft import raft_off
from monGARS.components.report import report
from monGARS.components.resolve_sources import resolve_sources
from monGARS.components.sft import sft
from monGARS.pipelines import placement
from monGARS.pipelines.options import PipelineOptions

PIPELINE_NAME = "mongars"
STAGE_ORDER = ("build_datasets", "sft", "llm2vec", "raft", "export", "report")
DESCRIPTION = (
    "monGARS: French, code-aware assistant — datasets, QLoRA SFT, LLM2Vec encoder, optional "
    "RAFT, verified GGUF export, evaluation and promotion gate, report."
)


def _reaches(last_stage: str, stage: str) -> bool:
    return STAGE_ORDER.index(stage) <= STAGE_ORDER.index(last_stage)


def pipeline_signature() -> inspect.Signature:
    """The pipeline's inputs, from the parameter declaration (KFP reads them from here)."""
    from monGARS.mlops.parameters import PARAMETERS, defaults

    values = defaults()
    return inspect.Signature(
        [
            inspect.Parameter(
                p.name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=values[p.name],
                annotation=p.type,
            )
            for p in PARAMETERS
        ],
        return_annotation=str,
    )


def build_pipeline(
    last_stage: str = "report",
    options: PipelineOptions = PipelineOptions(),  # noqa: B008 - frozen, safe as a default
) -> Callable[..., dsl.PipelineTask]:
    """The pipeline function running every stage up to ``last_stage`` (report always closes it).

    Code changes reach every cache key through the image tag (components/images.py hashes the
    image sources), on a cluster and in kfp.local alike, so the local run needs no variant.
    """
    from monGARS.mlops.parameters import stage_parameters

    if last_stage not in STAGE_ORDER:
        raise ValueError(f"last_stage must be one of {', '.join(STAGE_ORDER)}; got {last_stage!r}")
    if problems := options.problems():
        raise ValueError("; ".join(problems))

    def _cached(task: dsl.PipelineTask, stage: str) -> dsl.PipelineTask:
        task.set_caching_options(enable_caching=True)
        placement.set_resources(task, stage)
        placement.use_image_pull_secrets(task, options.image_pull_secrets)
        return task

    signature = pipeline_signature()

    def mongars_pipeline(*args: Any, **kwargs: Any) -> str:
        # KFP passes the inputs positionally, in the order of the signature built below.
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        params = bound.arguments

        def stage_args(stage: str) -> dict[str, Any]:
            return {p.name: params[p.name] for p in stage_parameters(stage)}

        def on_gpu(task: dsl.PipelineTask, stage: str) -> dsl.PipelineTask:
            _cached(task, stage)
            placement.set_resources(task, stage, options.accelerator_count)  # one rank per GPU
            placement.place_on_gpu(
                task,
                options.accelerator_type,
                options.accelerator_count,
                params["gpu_node_selector"],
                params["gpu_tolerations"],
                options.gpu_retry_window_hours,
            )
            placement.use_hf_token(task, params["hf_token_secret"])
            placement.use_shared_cache(task, params["model_cache_pvc"])
            return task

        # Never cached: it re-reads what lies outside each run (monGARS.mlops.sources).
        sources = resolve_sources(
            base_model=params["base_model"], datasets_config=params["datasets_config"]
        )
        placement.set_resources(sources, "resolve_sources")
        placement.use_image_pull_secrets(sources, options.image_pull_secrets)
        sources.set_caching_options(enable_caching=False)
        sources.set_display_name("resolve sources")
        placement.use_hf_token(sources, params["hf_token_secret"])

        data = _cached(
            build_datasets(
                source_revisions=sources.outputs["dataset_revisions"],
                **stage_args("build_datasets"),
            ),
            "build_datasets",
        )
        placement.use_hf_token(data, params["hf_token_secret"])
        datasets = data.outputs["datasets"]

        # The report's inputs: small per-stage summaries only (the launcher downloads every input
        # artifact, collected lists included); one list per stage, extended per new stage.
        summaries: dict[str, dsl.Collected] = {}
        if _reaches(last_stage, "sft"):
            fetch = _cached(
                fetch_base_model(
                    base_model=params["base_model"],
                    revision=sources.outputs["base_model_revision"],
                ),
                "fetch_base_model",
            )
            fetch.set_display_name("fetch base model")
            placement.use_hf_token(fetch, params["hf_token_secret"])
            placement.use_shared_cache(fetch, params["model_cache_pvc"])
            base = fetch.outputs["model"]

            with dsl.ParallelFor(
                data.outputs["Output"], name="per-module", parallelism=options.parallelism
            ) as module:
                sft_task = on_gpu(
                    sft(base_model=base, datasets=datasets, module=module, **stage_args("sft")),
                    "sft",
                )
                sft_adapter = sft_task.outputs["adapter"]
                summaries["sft_summaries"] = dsl.Collected(sft_task.outputs["stage_summary"])

                if _reaches(last_stage, "llm2vec"):
                    encoder_task = on_gpu(
                        llm2vec(
                            base_model=base,
                            sft_adapter=sft_adapter,
                            datasets=datasets,
                            module=module,
                            **stage_args("llm2vec"),
                        ),
                        "llm2vec",
                    )
                    encoder = encoder_task.outputs["encoder"]
                    summaries["llm2vec_summaries"] = dsl.Collected(
                        encoder_task.outputs["stage_summary"]
                    )

                if _reaches(last_stage, "raft"):
                    with dsl.If(params["raft"] == True, name="raft-on"):  # noqa: E712 - a KFP condition
                        raft_task = on_gpu(
                            raft_component(
                                base_model=base,
                                sft_adapter=sft_adapter,
                                encoder=encoder,
                                datasets=datasets,
                                module=module,
                                **stage_args("raft"),
                            ),
                            "raft",
                        )
                    with dsl.Else(name="raft-off"):
                        skipped = _cached(raft_off(module=module), "raft_off")
                        skipped.set_display_name("raft off")
                    merge_task = _cached(
                        merge_adapter(
                            base_model=base,
                            adapter=sft_adapter,
                            module=module,
                            raft_adapter=dsl.OneOf(raft_task.outputs["Output"], skipped.output),
                        ),
                        "merge_adapter",
                    )
                    placement.use_shared_cache(merge_task, params["model_cache_pvc"])
                    chat_model = merge_task.outputs["merged"]

                if _reaches(last_stage, "export"):
                    export_task = _cached(
                        export(
                            chat_model=chat_model,
                            encoder=encoder,
                            module=module,
                            **stage_args("export"),
                        ),
                        "export",
                    )
                    summaries["export_summaries"] = dsl.Collected(
                        export_task.outputs["stage_summary"]
                    )
                    gguf = export_task.outputs["gguf"]
                    # The files that ship, scored on CPU; a small artifact for promote and report.
                    evaluate_task = _cached(
                        evaluate(
                            gguf=gguf,
                            chat_model=chat_model,
                            base_model=base,
                            datasets=datasets,
                            module=module,
                            **stage_args("evaluate"),
                        ),
                        "evaluate",
                    )
                    placement.use_shared_cache(evaluate_task, params["model_cache_pvc"])
                    summaries["evaluation_summaries"] = dsl.Collected(
                        evaluate_task.outputs["stage_summary"]
                    )

        report_inputs: dict[str, Any] = dict(summaries)
        if "evaluation_summaries" in summaries:
            # Never cached: it reads and writes the champion registry, which outlives runs.
            # It takes the GGUF bundles because it uploads the winners to the registry.
            promote_task = promote(
                # Its own Collected objects: one instance read by two tasks confuses the compiler.
                evaluations=dsl.Collected(evaluate_task.outputs["evaluation"]),
                ggufs=dsl.Collected(gguf),
                run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                job_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                image=CPU_IMAGE,
                **stage_args("promote"),
            )
            promote_task.set_caching_options(enable_caching=False)
            placement.set_resources(promote_task, "promote")
            placement.use_image_pull_secrets(promote_task, options.image_pull_secrets)
            placement.use_shared_cache(promote_task, params["model_cache_pvc"])
            report_inputs["promotion"] = promote_task.outputs["promotion"]

        report_task = _cached(
            report(
                run_name=params["run_name"],
                datasets_summary=data.outputs["stage_summary"],
                **report_inputs,
            ),
            "report",
        )
        return report_task.outputs["Output"]

    mongars_pipeline.__signature__ = signature  # type: ignore[attr-defined]
    mongars_pipeline.__annotations__ = {
        name: parameter.annotation for name, parameter in signature.parameters.items()
    } | {"return": str}
    return dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)(mongars_pipeline)


mongars_pipeline = build_pipeline()
