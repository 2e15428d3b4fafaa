"""The monGARS pipeline: fetch + build_datasets, then per module sft -> llm2vec -> [raft] -> export.

``build_pipeline(last_stage)`` builds the DAG up to a stage (the runbook's stage flags); the
compiled, committed YAML is the full pipeline. Every task is cached, so running again with the
same inputs resumes: finished stages are cache hits.
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
    task_env: dict[str, str] | None = None,
    gpu_accelerators: bool = True,
) -> Callable[..., dsl.PipelineTask]:
    """The pipeline function running every stage up to ``last_stage`` (report always closes it).

    ``task_env`` is set on every task; the local driver passes a fingerprint of the library code so
    the local cache notices code changes (on a cluster the image tag plays that role).
    ``gpu_accelerators=False`` leaves out the accelerator request, which kfp.local ignores anyway
    but cannot resolve from a pipeline parameter inside a ParallelFor; nothing else changes.
    """
    if last_stage not in STAGE_ORDER:
        raise ValueError(f"last_stage must be one of {', '.join(STAGE_ORDER)}; got {last_stage!r}")

    def _cached(task: dsl.PipelineTask, stage: str) -> dsl.PipelineTask:
        task.set_caching_options(enable_caching=True)
        placement.set_resources(task, stage)
        for name, value in sorted((task_env or {}).items()):
            task.set_env_variable(name, value)
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
        gpu_accelerator_type: str = "nvidia.com/gpu",
        gpu_limit: int = 1,
        gpu_node_selector: dict = DEFAULT_GPU_NODE_SELECTOR,
        gpu_tolerations: list = DEFAULT_GPU_TOLERATIONS,
        hf_token_secret: str = "hf-token",
        model_cache_pvc: str = "mongars-model-cache",
    ) -> str:
        def on_gpu(task: dsl.PipelineTask, stage: str) -> dsl.PipelineTask:
            _cached(task, stage)
            placement.place_on_gpu(
                task,
                gpu_accelerator_type if gpu_accelerators else None,
                gpu_limit,
                gpu_node_selector,
                gpu_tolerations,
            )
            placement.use_hf_token(task, hf_token_secret)
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
            placement.use_model_cache(fetch, model_cache_pvc)
            base = fetch.outputs["model"]

            with dsl.ParallelFor(data.outputs["Output"], name="per-module") as module:
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
                    # The chat model is the RAFT adapter when raft is on, the SFT adapter otherwise;
                    # each branch merges its adapter so export gets one model either way.
                    with dsl.If(raft == True, name="raft-on"):  # noqa: E712 - KFP condition
                        raft_task = on_gpu(
                            raft_component(
                                base_model=base,
                                sft_adapter=sft_adapter,
                                encoder=encoder,
                                datasets=datasets,
                                module=module,
                                seed=seed,
                                raft_config=raft_config,
                            ),
                            "raft",
                        )
                        merged_raft = _cached(
                            merge_adapter(
                                base_model=base,
                                adapter=raft_task.outputs["adapter"],
                                module=module,
                            ),
                            "export",
                        )
                    with dsl.Else(name="raft-off"):
                        merged_sft = _cached(
                            merge_adapter(base_model=base, adapter=sft_adapter, module=module),
                            "export",
                        )
                    chat_model = dsl.OneOf(
                        merged_raft.outputs["merged"], merged_sft.outputs["merged"]
                    )

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
