"""Use an exported bundle: ``load_bundle(path).generate(...)``, ``.embed(documents)`` and
``.embed_queries(queries)`` via llama.cpp.

The manifest holds only relative paths, so a bundle folder can be copied or downloaded anywhere.
Files are checked against the manifest's sizes on load (sha256 on request).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from monGARS.mlops.atomic import sha256_file
from monGARS.mlops.cpus import thread_budget
from monGARS.mlops.errors import MongarsError

BUNDLE_JSON = "bundle.json"


@dataclasses.dataclass
class Bundle:
    """An exported module: chat GGUF files, an optional encoder, and their manifest."""

    root: Path
    manifest: dict[str, Any]
    n_ctx: int = 2048
    _chat: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    _encoder: Any = dataclasses.field(default=None, repr=False)

    @property
    def module(self) -> str:
        return str(self.manifest["module"])

    def file(self, kind: str, quant: str | None = None) -> Path:
        """Path of the ``kind`` ('chat'/'encoder') file of type ``quant`` (default: bundle's)."""
        family = self.manifest.get(kind)
        if not family:
            raise MongarsError(f"bundle {self.root}: has no {kind} model")
        label = (quant or family["default"]).upper()
        if label not in family["files"]:
            raise MongarsError(
                f"bundle {self.root}: no {kind} file of type {label}; "
                f"available: {', '.join(family['files'])}"
            )
        return self.root / family["files"][label]["path"]

    def _chat_llm(self, quant: str | None) -> Any:
        import llama_cpp

        path = self.file("chat", quant)
        if path not in self._chat:
            threads = thread_budget()
            self._chat[path] = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=self.n_ctx,
                verbose=False,
                n_threads=threads,
                n_threads_batch=threads,
            )
        return self._chat[path]

    def generate(
        self,
        prompt: str | list[dict[str, str]],
        max_tokens: int = 128,
        *,
        quant: str | None = None,
        temperature: float = 0.0,
    ) -> str:
        """Complete a raw prompt, or answer chat ``messages`` through the model's chat template."""
        llm = self._chat_llm(quant)
        if isinstance(prompt, str):
            result = llm.create_completion(prompt, max_tokens=max_tokens, temperature=temperature)
            return str(result["choices"][0]["text"])
        result = llm.create_chat_completion(
            messages=prompt, max_tokens=max_tokens, temperature=temperature
        )
        return str(result["choices"][0]["message"]["content"] or "")

    def _encoder_family(self) -> dict[str, Any]:
        family = self.manifest.get("encoder")
        if not family:
            raise MongarsError(
                f"bundle {self.root}: has no encoder; export it with an llm2vec output"
            )
        return dict(family)

    def _embed(
        self, texts: str | list[str], instruction: str | None, normalize: bool
    ) -> np.ndarray:
        from monGARS.mlops.export.verify import embed_span, llama_token_spans, open_encoder

        family = self._encoder_family()
        if self._encoder is None:
            self._encoder = open_encoder(
                self.file("encoder"), self.n_ctx, causal=bool(family.get("causal", False))
            )
        items = [texts] if isinstance(texts, str) else list(texts)
        max_length = min(int(family.get("max_length") or self.n_ctx), self.n_ctx)
        pooling = str(family.get("pooling", "mean"))
        vectors = [
            embed_span(self._encoder, ids, span, pooling)
            for ids, span in llama_token_spans(self._encoder, items, instruction, max_length)
        ]
        matrix = np.asarray(vectors, dtype=np.float32).reshape(len(items), -1)
        if normalize:
            matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
        return matrix

    def embed(self, texts: str | list[str], *, normalize: bool = False) -> np.ndarray:
        """Document embeddings ([texts, hidden]) from the encoder, as the llm2vec stage pools
        them: the text's own tokens, not BOS; attention as it was trained."""
        return self._embed(texts, None, normalize)

    def embed_queries(self, texts: str | list[str], *, normalize: bool = False) -> np.ndarray:
        """Query embeddings: each query read after the encoder's ``query_instruction`` (from
        the manifest), which is attended to but not pooled, as ``Encoder.embed_queries`` does."""
        instruction = str(self._encoder_family().get("query_instruction") or "")
        return self._embed(texts, instruction, normalize)

    def close(self) -> None:
        """Free the llama.cpp models (their finalisers misbehave at interpreter exit)."""
        for llm in self._chat.values():
            llm.close()
        self._chat.clear()
        if self._encoder is not None:
            self._encoder.close()
            self._encoder = None

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_bundle(path: str | Path, *, n_ctx: int = 2048, check_hashes: bool = False) -> Bundle:
    """Open a bundle folder (or its bundle.json) after checking every listed file is there."""
    root = Path(path)
    if root.is_file():
        root = root.parent
    manifest_path = root / BUNDLE_JSON
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MongarsError(
            f"bundle: {root} has no {BUNDLE_JSON}; give an export output folder"
        ) from None
    except (OSError, json.JSONDecodeError) as error:
        raise MongarsError(f"bundle: {manifest_path} cannot be read ({error})") from None
    for kind in ("chat", "encoder"):
        for entry in ((manifest.get(kind) or {}).get("files") or {}).values():
            file_path = root / entry["path"]
            if not file_path.is_file() or file_path.stat().st_size != entry["bytes"]:
                raise MongarsError(
                    f"bundle: {file_path} is missing or truncated; re-run the export"
                )
            if check_hashes and sha256_file(file_path) != entry["sha256"]:
                raise MongarsError(
                    f"bundle: {file_path} does not match its sha256; re-run the export"
                )
    return Bundle(root=root, manifest=manifest, n_ctx=n_ctx)
