"""The run report: what a person sees, checked on its HTML (and in Chromium when present)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from monGARS.mlops.report import line_chart, write_report
from monGARS.mlops.summaries import write_stage_summary

VOID = {"meta", "br", "img", "input", "link", "hr", "rect", "line", "circle", "polyline"}


class _Page(HTMLParser):
    """Checks that every element closes where it should; collects ids, links, tables, SVGs."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: list[str] = []
        self.hrefs: list[str] = []
        self.polylines = 0
        self.svgs = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.append(values["id"] or "")
        if tag == "a" and values.get("href"):
            self.hrefs.append(values["href"] or "")
        self.polylines += tag == "polyline"
        self.svgs += tag == "svg"
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.polylines += tag == "polyline"

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    assert page.errors == [] and page.stack == [], (page.errors, page.stack)
    return page


def _phase(losses: list[float]) -> dict:
    return {
        "steps": len(losses),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "losses": losses,
    }


def _retrieval(mrr: float, at_1: float, at_10: float) -> dict:
    return {"mrr": mrr, "recall_at_1": at_1, "recall_at_10": at_10}


def _artifacts(root: Path, modules: tuple[str, ...] = ("api", "training")) -> tuple:
    """Stage outputs as the stages write them (figures from a tiny run)."""
    datasets = root / "datasets"
    (datasets / "modules").mkdir(parents=True)
    (datasets / "modules.json").write_text(json.dumps(list(modules)))
    summary = {
        "outputs": {"instruction": {"train": 34, "val": 6}, "retrieval": {"train": 104, "val": 16}},
        "totals": {"rows_read": 190, "records_kept": 190, "records_dropped": 0},
        "config": {"languages": ["fr"]},
        "sources": [
            {"name": "sample_fr_instruction", "kind": "instruction", "read": 40, "kept": 38,
             "dropped": {"pii_secret": 2}, "error": None},
        ],
        "code": {"roots": ["boutique"], "files": 4, "facts": {"function": 12}, "records": 30},
        "modules": {name: {"train": 8, "val": 1, "status": "included"} for name in modules},
    }  # fmt: skip
    (datasets / "summary.json").write_text(json.dumps(summary))
    sft_dirs, encoder_dirs, gguf_dirs = [], [], []
    for name in modules:
        folder = datasets / "modules" / name
        folder.mkdir()
        (folder / "train.jsonl").write_text('{"a": 1}\n' * 8)
        (folder / "val.jsonl").write_text('{"a": 1}\n')
        sft = root / name / "sft"
        (sft / "adapter").mkdir(parents=True)
        (sft / "metrics.json").write_text(
            json.dumps(
                {
                    "module": name,
                    "steps": 30,
                    "train_loss_first": 6.977,
                    "train_loss_last": 6.152,
                    "eval_loss_before": 6.955,
                    "eval_loss_after": 6.153,
                    "loss_history": [{"step": s, "loss": 7 - s / 30} for s in range(1, 31, 3)],
                    "eval_history": [{"step": s, "eval_loss": 6.9 - s / 40} for s in (0, 10, 20)],
                    "train_records": 69,
                    "module_train_records": 8,
                    "french_train_records": 61,
                    "tokens_per_second": 685.7,
                }
            )
        )
        encoder = root / name / "llm2vec"
        (encoder / "encoder").mkdir(parents=True)
        (encoder / "encoder.json").write_text(json.dumps({"module": name}))
        (encoder / "metrics.json").write_text(
            json.dumps(
                {
                    "module": name,
                    "mntp": _phase([6.5, 6.45, 6.4]),
                    "supervised": _phase([8.1, 0.45]),
                    "retrieval": {
                        "split": "val",
                        "queries": 16,
                        "passages": 32,
                        "before": _retrieval(0.21, 0.125, 0.5),
                        "after_mntp": _retrieval(0.25, 0.2, 0.5),
                        "after_supervised": _retrieval(0.33, 0.25, 0.75),
                        "after": _retrieval(0.33, 0.25, 0.75),
                    },
                }
            )
        )  # fmt: skip
        gguf = root / name / "gguf"
        gguf.mkdir()
        files = {}
        checks = {}
        for label, size in (("F16", 3441984), ("Q4_K_M", 1102400)):
            path = f"{name}-chat-{label}.gguf"
            (gguf / path).write_bytes(b"GGUF")
            files[label] = {"path": path, "bytes": size, "quant": label.lower(), "verified": True}
            checks[path] = {"logits_min_cosine": 0.9406, "top1_agreement": 0.8857,
                            "bounds": {"min_cosine": 0.7}, "passed": True}  # fmt: skip
        (gguf / "bundle.json").write_text(
            json.dumps({"module": name, "chat": {"default": "Q4_K_M", "files": files}})
        )
        (gguf / "verification.json").write_text(json.dumps({"files": checks}))
        (gguf / "Modelfile").write_text("FROM x")
        sft_dirs.append(str(sft))
        encoder_dirs.append(str(encoder))
        gguf_dirs.append(str(gguf))
    return datasets, sft_dirs, encoder_dirs, gguf_dirs


def _summaries(root: Path, uri_of=str, modules: tuple[str, ...] = ("api", "training")) -> tuple:
    """What the stages hand the report: one small summary per stage output (``uri_of`` maps a
    local artifact folder to the URI the launcher gave it)."""
    datasets, sft, encoders, ggufs = _artifacts(root, modules)
    out = root / "summaries"
    datasets_summary = out / "datasets.json"
    write_stage_summary("build_datasets", "", datasets, uri_of(datasets), datasets_summary)
    paths = []
    for stage, folders in (("sft", sft), ("llm2vec", encoders), ("export", ggufs)):
        for index, folder in enumerate(folders):
            path = out / f"{stage}-{index}.json"
            write_stage_summary(stage, modules[index], folder, uri_of(Path(folder)), path)
            paths.append(str(path))
    return datasets_summary, paths


def _evaluation(root: Path, module: str, tuned_nll: float) -> str:
    """An evaluate artifact as the stage writes it (only the fields the report reads)."""
    folder = root / "evaluate" / module
    folder.mkdir(parents=True)
    headline = {"assistant_nll": tuned_nll, "token_f1": 0.2026, "french_share": 1.0}
    evaluation = {
        "module": module,
        "quant": "Q8_0",
        "items": 6,
        "base_gguf": "cached",
        "summary": {
            "base": {"assistant_nll": 7.0001, "token_f1": 0.0, "french_share": 0.5},
            "tuned": headline,
            "hf": {**headline, "assistant_nll": tuned_nll + 0.0012},
            "tuned_on_hf_items": headline,
        },
        "gguf_vs_hf": {"same_answer_share": 1.0, "nll_delta": -0.0012},
        "samples": [{"reference": "La fonction <b>x</b>.", "tuned": "La fonction", "base": "ab"}],
        "seconds": {"total": 4.25},
    }
    (folder / "evaluation.json").write_text(json.dumps(evaluation))
    return str(folder)


def _promotion(root: Path) -> str:
    folder = root / "promote"
    folder.mkdir()
    result = {
        "registry": "gs://bucket/champions",
        "promoted": ["api"],
        "rejected": ["training"],
        "modules": {
            "api": {"outcome": "promoted", "promoted": True, "reasons": [], "published": True,
                    "champion_before": None, "champion_after": "v-api-2",
                    "figures": {"champion": None}},
            "training": {"outcome": "rejected", "promoted": False, "published": False,
                         "reasons": ["French share 0.000 (needs >= 0.5)"],
                         "champion_before": "v-training-1", "champion_after": "v-training-1",
                         "figures": {"champion": {"version": "v-training-1",
                                                  "assistant_nll": 5.4, "token_f1": 0.3}}},
        },
    }  # fmt: skip
    (folder / "promotion.json").write_text(json.dumps(result))
    return str(folder)


def _evaluation_summaries(root: Path, tuned_nll: dict[str, float]) -> list[str]:
    """The evaluate stage's summaries, written from its artifacts as the component does."""
    paths = []
    for module, nll in tuned_nll.items():
        path = root / "summaries" / f"evaluate-{module}.json"
        write_stage_summary("evaluate", module, _evaluation(root, module, nll), "", path)
        paths.append(str(path))
    return paths


@pytest.fixture
def report(tmp_path: Path) -> tuple[Path, str]:
    datasets_summary, summaries = _summaries(tmp_path)
    evaluations = _evaluation_summaries(tmp_path, {"api": 5.5946, "training": 6.44})
    html_path = tmp_path / "report.html"
    write_report(
        "run&demo",
        datasets_summary,
        summaries + evaluations,
        html_path,
        promotion_path=_promotion(tmp_path),
    )
    return html_path, html_path.read_text(encoding="utf-8")


def test_report_opens_with_the_promotion_and_shows_base_tuned_champion(report) -> None:
    _, text = report
    page = _parse(text)
    assert not page.errors
    assert page.ids.index("promotion") < page.ids.index("overview")
    words = " ".join(" ".join(page.text).split())
    assert "api : promoted — new champion v-api-2" in words
    assert "training : rejected — the champion stays v-training-1" in words
    assert "French share 0.000 (needs >= 0.5)" in words
    assert words.count("Evaluation of the files that ship (Q8_0, 6 held-out items)") == 2
    assert "7.000 → 5.595 (-1.405)" in words  # base → tuned NLL
    assert "5.400 → 6.440 (+1.040)" in words  # champion → tuned NLL, a regression
    assert "La fonction <b>x</b>." in words and "<b>x</b>" not in text  # samples are escaped


def test_report_has_sections_per_stage_and_module(report) -> None:
    _, text = report
    page = _parse(text)
    assert {"overview", "datasets", "module-api", "module-training"} <= set(page.ids)
    words = " ".join(page.text)
    for heading in (
        "Supervised fine-tuning (LoRA)",
        "Text encoder (llm2vec",
        "GGUF files, checked in llama.cpp",
        "French corpora (records)",
        "Per-module datasets, mined from code",
    ):
        assert words.count(heading) >= 1, heading
    assert "run&amp;demo" in text and "run&demo" not in text.replace("run&amp;demo", "")
    # Plain labels, never the dotted keys of the old report.
    assert not re.search(r"\b(outputs|totals|sft|llm2vec)\.[a-z_]+\.", words)


def test_report_shows_losses_retrieval_and_gguf_figures_with_units(report) -> None:
    _, text = report
    page = _parse(text)
    words = " ".join(" ".join(page.text).split())
    assert "6.977 → 6.152 (-0.825)" in words  # train loss first → last, with the change
    assert "0.210 → 0.330 (+0.120)" in words  # retrieval MRR before → after, overview
    assert "after supervised contrastive" in words and "recall@10" in words
    assert "3.3 MB" in words and "1.1 MB" in words and "Q4_K_M" in words
    assert "min cosine 0.9406" in words and "88.6 %" in words and "✓ passed" in words
    assert "61 French" in words and "Throughput (tokens/s)" in words
    # Loss curves: one SFT chart (train + validation) and one llm2vec chart per module.
    assert page.svgs == 4 and page.polylines == 2 * 4


def test_report_links_to_the_files(report, tmp_path: Path) -> None:
    _, text = report
    page = _parse(text)
    local = [href for href in page.hrefs if href.startswith("file://")]
    assert any(href.endswith("/api/gguf/api-chat-Q4_K_M.gguf") for href in local)
    assert any(href.endswith("/training/sft/metrics.json") for href in local)
    for href in local:
        assert Path(href.removeprefix("file://")).exists(), href
    anchors = {href[1:] for href in page.hrefs if href.startswith("#")}
    assert anchors <= set(page.ids)


def test_report_of_a_datasets_only_run(tmp_path: Path) -> None:
    datasets_summary, _ = _summaries(tmp_path)
    html_path = tmp_path / "report.html"
    summary, figures = write_report("d", datasets_summary, [], html_path)
    text = html_path.read_text()
    _parse(text)
    assert text.count("no training stage ran for this module yet") == 2
    assert json.loads(summary)["modules"]["api"]["train_records"] == 8
    assert figures["api.records.train"] == 8.0


def test_report_reads_summaries_only_and_links_the_object_store(tmp_path: Path) -> None:
    """On a cluster the stage outputs live in the object store and only their summaries reach
    the report pod: the page and the pipeline's output name ``gs://``/``s3://``/``minio://`` URIs,
    never the launcher's local ``/gcs``, ``/s3``, ``/minio`` paths."""
    import shutil

    schemes = {"api": "gs://bucket/v2/run-1", "training": "minio://mlpipeline/v2/run-1"}

    def uri_of(folder: Path) -> str:
        relative = folder.relative_to(tmp_path).as_posix()
        module = relative.split("/")[0]
        return f"{schemes.get(module, 's3://bucket/v2/run-1')}/{relative}"

    datasets_summary, summaries = _summaries(tmp_path, uri_of)
    for name in ("api", "training", "datasets"):  # the pod never has the artifacts
        shutil.rmtree(tmp_path / name)
    html_path = tmp_path / "report.html"
    output, figures = write_report(
        "cluster", datasets_summary, summaries, html_path, "gs://bucket/v2/run-1/report_html"
    )
    text = html_path.read_text(encoding="utf-8")
    page = _parse(text)
    words = " ".join(" ".join(page.text).split())
    assert "6.977 → 6.152 (-0.825)" in words and "min cosine 0.9406" in words
    assert figures["api.sft.train_loss_last"] == pytest.approx(6.152)
    assert not any(href.startswith("file://") for href in page.hrefs)
    assert "https://storage.cloud.google.com/bucket/v2/run-1/api/gguf/api-chat-Q4_K_M.gguf" in (
        page.hrefs
    )
    assert "minio://mlpipeline/v2/run-1/training/sft" in text
    assert str(tmp_path) not in text
    locations = json.loads(output)
    assert locations["report"] == "gs://bucket/v2/run-1/report_html"
    assert locations["datasets"] == "s3://bucket/v2/run-1/datasets"
    api = locations["modules"]["api"]
    assert api["sft_adapter"] == "gs://bucket/v2/run-1/api/sft"
    assert "gs://bucket/v2/run-1/api/gguf/api-chat-F16.gguf" in api["gguf_files"]
    assert (
        locations["modules"]["training"]["encoder"]
        == "minio://mlpipeline/v2/run-1/training/llm2vec"
    )
    assert str(tmp_path) not in output


def test_line_chart_scales_every_series_into_the_plot() -> None:
    svg = line_chart(
        [("a", [(0, 1.0), (10, 3.0)]), ("b", [(5, 2.0)])], title="t", x_label="x", y_label="y"
    )
    assert svg.count("<polyline") == 1 and svg.count("<circle") == 1
    coords = [
        float(v)
        for pair in re.findall(r"points='([^']+)'", svg)[0].split()
        for v in pair.split(",")
    ]
    width, height = (int(v) for v in re.search(r"viewBox='0 0 (\d+) (\d+)'", svg).groups())
    assert all(0 <= c <= max(width, height) for c in coords)
    assert line_chart([], title="t", x_label="x", y_label="y") == ""


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_report_renders_in_chromium(report, tmp_path: Path) -> None:
    html_path, _ = report
    shot = tmp_path / "report.png"
    command = [
        "chromium", "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--no-first-run",
        f"--screenshot={shot}",
        "--window-size=1280,2000", html_path.as_uri(),
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    dom = subprocess.run(
        [*command[:-3], "--dump-dom", html_path.as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "module-training" in dom and "<svg" in dom and 'id="promotion"' in dom
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1280, 2000)
