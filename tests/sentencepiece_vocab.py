"""A real SentencePiece vocabulary offline: Mistral-7B v0.1/v0.2's, shipped as a test fixture.

``tests/fixtures/tokenizers/mistral-v0.1/tokenizer.model`` is ``mistral_common/data/
tokenizer.model.v1`` from the ``mistral_common`` 1.13.1 wheel on PyPI (Apache-2.0, LICENSE next
to it; sha256 dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055). It is turned
into an HF tokenizer here without the ``sentencepiece`` package: the model file is parsed with the
protobuf schema transformers ships, and its BPE pieces become a ``LlamaTokenizer`` (Metaspace
"▁" prefix, byte fallback, BOS added) the way transformers' own SentencePiece conversion builds
it. tests/unit/test_llm2vec_upstream_parity.py checks its ids against the sentencepiece-backed
tokenizer's, recorded by tests/fixtures/llm2vec/upstream_reference.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MISTRAL_TOKENIZER_MODEL = (
    Path(__file__).resolve().parent / "fixtures" / "tokenizers" / "mistral-v0.1" / "tokenizer.model"
)


def mistral_tokenizer() -> Any:
    """Mistral v0.1's 32000-piece SentencePiece BPE vocabulary as a transformers tokenizer."""
    from transformers import LlamaTokenizer
    from transformers.convert_slow_tokenizer import generate_merges, import_protobuf

    proto = import_protobuf().ModelProto()
    proto.ParseFromString(MISTRAL_TOKENIZER_MODEL.read_bytes())
    vocab = {piece.piece: index for index, piece in enumerate(proto.pieces)}
    tokenizer = LlamaTokenizer(vocab=vocab, merges=generate_merges(vocab), add_bos_token=True)
    tokenizer.update_post_processor()
    return tokenizer
