"""The monGARS pipeline: fetch + build_datasets, then per module sft -> llm2vec -> raft -> export.

``build_pipeline(last_stage, options)`` builds the DAG up to a stage (the runbook's stage flags);
the compiled, committed YAML is the full pipeline, and ``kfp.local`` runs that same definition.
Every task is cached, so running again with the same inputs resumes: finished stages are cache
hits. The DAG has no condition and no ``dsl.OneOf``: with ``raft=false`` the raft task passes the
SFT adapter on, so one merge task feeds export either way and older KFP backends run it
(docs/cluster.md gives the minimum version).
"""

from collections.abc import Callable

from kfp import dsl

from components.build_datasets import build_datasets
from components.export import export
from components.fetch_base_model import fetch_base_model
from components.llm2vec import llm2vec
from components.merge_adapter import merge_adapter
from components.raft import raft as raft_component
from components.report import report
from components.sft import sft
from pipelines import placement
from pipelines.options import PipelineOptions

PIPELINE_NAME = "mongars"
STAGE_ORDER = ("build_datasets", "sft", "llm2vec", "raft", "export", "report")
CLUSTER_BASE_MODEL = "mistralai/Mistral-7B-v0.2"
DEFAULT_QUANT_TYPES = "q8_0,q4_k_m"
# Without a node selector the GPU limit alone schedules onto GPU nodes (GKE GPU pools and the
# NVIDIA GPU operator both advertise nvidia.com/gpu); both taint GPU nodes with nvidia.com/gpu.
DEFAULT_GPU_NODE_SELECTOR: dict = {}
DEFAULT_GPU_TOLERATIONS: list = [
    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
]


def _reaches(last_stage: str, stage: str) -> bool:
    return STAGE_ORDER.index(stage) <= STAGE_ORDER.index(last_stage)


def build_pipeline(
    last_stage: str = "report",
    options: PipelineOptions = PipelineOptions(),  # noqa: B008 - frozen, safe as a default
) -> Callable[..., dsl.PipelineTask]:
    """The pipeline function running every stage up to ``last_stage`` (report always closes it).

    Code changes reach every cache key through the image tag (components/images.py hashes the
    image sources), on a cluster and in kfp.local alike, so the local run needs no variant.
    """
    if last_stage not in STAGE_ORDER:
        raise ValueError(f"last_stage must be one of {', '.join(STAGE_ORDER)}; got {last_stage!r}")
    if problems := options.problems():
        raise ValueError("; ".join(problems))

    def _cached(task: dsl.PipelineTask, stage: str) -> dsl.PipelineTask:
        task.set_caching_options(enable_caching=True)
        placement.set_resources(task, stage)
        return task

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="monGARS: French, code-aware assistant — datasets, QLoRA SFT, LLM2Vec "
        "encoder, optional RAFT, verified GGUF export, report.",
    )
    def mongars_pipeline(
        base_model: str = CLUSTER_BASE_MODEL,
        run_name: str = "mongars",
        datasets_config: dict = {},  # noqa: B006 - KFP reads defaults from the signature
        languages: list[str] = ["fr"],  # noqa: B006
        val_split: float = 0.1,
        split_seed: int = 42,
        seed: int = 42,
        lora_r: int = 16,
        lora_alpha: int = 32,
        lora_dropout: float = 0.05,
        epochs: float = 1.0,
        max_steps: int = -1,
        batch_size: int = 4,
        learning_rate: float = 2e-4,
        vram_budget_mb: int = 0,
        checkpoint_root: str = "",
        sft_config: dict = {},  # noqa: B006
        mntp_config: dict = {},  # noqa: B006
        simcse_config: dict = {},  # noqa: B006
        llm2vec_config: dict = {},  # noqa: B006
        raft: bool = False,
        raft_config: dict = {},  # noqa: B006
        export_method: str = "gguf",
        quant_types: str = DEFAULT_QUANT_TYPES,
        export_cmd: str = "",
        export_config: dict = {},  # noqa: B006
        gpu_node_selector: dict = DEFAULT_GPU_NODE_SELECTOR,
        gpu_tolerations: list = DEFAULT_GPU_TOLERATIONS,
        hf_token_secret: str = "hf-token",
        model_cache_pvc: str = "mongars-model-cache",
    ) -> str:
        def on_gpu(task: dsl.PipelineTask, stage: str) -> dsl.PipelineTask:
            _cached(task, stage)
            placement.place_on_gpu(
                task,
                options.accelerator_type,
                options.accelerator_count,
                gpu_node_selector,
                gpu_tolerations,
            )
            placement.use_hf_token(task, hf_token_secret)
            placement.use_shared_cache(task, model_cache_pvc)
            return task

        data = _cached(
            build_datasets(
                datasets_config=datasets_config,
                languages=languages,
                val_split=val_split,
                split_seed=split_seed,
            ),
            "build_datasets",
        )
        placement.use_hf_token(data, hf_token_secret)
        datasets = data.outputs["datasets"]

        collected: dict[str, dsl.Collected] = {}
        if _reaches(last_stage, "sft"):
            fetch = _cached(fetch_base_model(base_model=base_model), "fetch_base_model")
            fetch.set_display_name("fetch base model")
            placement.use_hf_token(fetch, hf_token_secret)
            placement.use_shared_cache(fetch, model_cache_pvc)
            base = fetch.outputs["model"]

            with dsl.ParallelFor(
                data.outputs["Output"], name="per-module", parallelism=options.parallelism
            ) as module:
                sft_task = on_gpu(
                    sft(
                        base_model=base,
                        datasets=datasets,
                        module=module,
                        lora_r=lora_r,
                        lora_alpha=lora_alpha,
                        lora_dropout=lora_dropout,
                        epochs=epochs,
                        max_steps=max_steps,
                        batch_size=batch_size,
                        learning_rate=learning_rate,
                        vram_budget_mb=vram_budget_mb,
                        seed=seed,
                        checkpoint_root=checkpoint_root,
                        sft_config=sft_config,
                    ),
                    "sft",
                )
                sft_adapter = sft_task.outputs["adapter"]
                collected["sft_adapters"] = dsl.Collected(sft_adapter)

                if _reaches(last_stage, "llm2vec"):
                    encoder_task = on_gpu(
                        llm2vec(
                            base_model=base,
                            sft_adapter=sft_adapter,
                            datasets=datasets,
                            module=module,
                            seed=seed,
                            mntp_config=mntp_config,
                            simcse_config=simcse_config,
                            llm2vec_config=llm2vec_config,
                        ),
                        "llm2vec",
                    )
                    encoder = encoder_task.outputs["encoder"]
                    collected["encoders"] = dsl.Collected(encoder)

                if _reaches(last_stage, "raft"):
                    # With raft=false the raft task passes the SFT adapter on: one merge either way.
                    raft_task = on_gpu(
                        raft_component(
                            base_model=base,
                            sft_adapter=sft_adapter,
                            encoder=encoder,
                            datasets=datasets,
                            module=module,
                            enabled=raft,
                            seed=seed,
                            raft_config=raft_config,
                        ),
                        "raft",
                    )
                    merge_task = _cached(
                        merge_adapter(
                            base_model=base, adapter=raft_task.outputs["adapter"], module=module
                        ),
                        "export",
                    )
                    placement.use_shared_cache(merge_task, model_cache_pvc)
                    chat_model = merge_task.outputs["merged"]

                if _reaches(last_stage, "export"):
                    export_task = _cached(
                        export(
                            chat_model=chat_model,
                            encoder=encoder,
                            module=module,
                            export_method=export_method,
                            quant_types=quant_types,
                            export_cmd=export_cmd,
                            export_config=export_config,
                        ),
                        "export",
                    )
                    collected["ggufs"] = dsl.Collected(export_task.outputs["gguf"])

        report_task = _cached(report(run_name=run_name, datasets=datasets, **collected), "report")
        return report_task.outputs["Output"]

    return mongars_pipeline


mongars_pipeline = build_pipeline()
