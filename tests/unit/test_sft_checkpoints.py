"""Checkpoint keys, completeness markers, cleanup of half-written folders, mirrored stores."""

from __future__ import annotations

from pathlib import Path

from monGARS.mlops.training.common.checkpoints import (
    MARKER,
    CheckpointStore,
    complete_checkpoints,
    hash_tree,
    is_complete,
    remove_incomplete,
    run_key,
    write_marker,
)


def _fake_checkpoint(folder: Path, step: int, *, marked: bool = True) -> Path:
    checkpoint = folder / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "adapter_model.safetensors").write_bytes(b"w" * (100 + step))
    (checkpoint / "optimizer.pt").write_bytes(b"o" * 50)
    (checkpoint / "trainer_state.json").write_text(f'{{"global_step": {step}}}')
    if marked:
        write_marker(checkpoint)
    return checkpoint


def test_run_key_is_stable_and_sensitive() -> None:
    inputs = {"base_model": "abc", "datasets": {"a": "1"}, "config": {"lora_r": 8}}
    assert run_key(inputs) == run_key(
        {"config": {"lora_r": 8}, "datasets": {"a": "1"}, "base_model": "abc"}
    )
    assert run_key(inputs) != run_key({**inputs, "config": {"lora_r": 16}})
    assert len(run_key(inputs)) == 20


def test_hash_tree_sees_content_and_names(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "w.bin").write_bytes(b"123")
    first = hash_tree(tmp_path)
    (tmp_path / "a" / "w.bin").write_bytes(b"124")
    assert hash_tree(tmp_path) != first
    (tmp_path / "a" / "w.bin").write_bytes(b"123")
    assert hash_tree(tmp_path) == first
    (tmp_path / "a" / "w.bin").rename(tmp_path / "a" / "v.bin")
    assert hash_tree(tmp_path) != first


def test_half_written_checkpoints_are_ignored_and_removed(tmp_path: Path) -> None:
    done = _fake_checkpoint(tmp_path, 10)
    unmarked = _fake_checkpoint(tmp_path, 20, marked=False)  # killed before the marker
    truncated = _fake_checkpoint(tmp_path, 30)
    (truncated / "optimizer.pt").write_bytes(b"o")  # a file changed size after marking
    missing = _fake_checkpoint(tmp_path, 40)
    (missing / "optimizer.pt").unlink()
    assert is_complete(done)
    assert not any(is_complete(p) for p in (unmarked, truncated, missing))
    assert complete_checkpoints(tmp_path) == [done]
    assert sorted(remove_incomplete(tmp_path)) == [unmarked, truncated, missing]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10"]


def test_checkpoints_sorted_by_step_not_name(tmp_path: Path) -> None:
    for step in (100, 20, 9):
        _fake_checkpoint(tmp_path, step)
    assert [p.name for p in complete_checkpoints(tmp_path)] == [
        "checkpoint-9",
        "checkpoint-20",
        "checkpoint-100",
    ]


def test_local_store_resumes_from_newest_complete(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path / "root"), "sft-m-key")
    assert store.local_dir == tmp_path / "root" / "sft-m-key"
    assert store.prepare() is None
    _fake_checkpoint(store.local_dir, 10)
    _fake_checkpoint(store.local_dir, 20, marked=False)
    assert store.prepare() == store.local_dir / "checkpoint-10"
    assert not (store.local_dir / "checkpoint-20").exists()


def test_mirrored_store_uploads_marker_last_and_downloads_latest(tmp_path: Path) -> None:
    remote_root = tmp_path / "bucket"
    writer = CheckpointStore(str(remote_root), "sft-m-key", mirror=True)
    try:
        for step in (10, 20, 30):
            checkpoint = _fake_checkpoint(writer.local_dir, step, marked=False)
            writer.finish_checkpoint(checkpoint)
        remote = remote_root / "sft-m-key"
        # Only the newest two complete checkpoints are kept remotely.
        assert sorted(p.name for p in remote.iterdir()) == ["checkpoint-20", "checkpoint-30"]
        assert (remote / "checkpoint-30" / MARKER).is_file()
        # An upload cut short (no marker) is not a resume point.
        _fake_checkpoint(remote, 40, marked=False)
    finally:
        writer.close()
    assert not writer.local_dir.exists()

    reader = CheckpointStore(str(remote_root), "sft-m-key", mirror=True)
    try:
        resume = reader.prepare()
        assert resume == reader.local_dir / "checkpoint-30"
        assert is_complete(resume)
        assert (resume / "adapter_model.safetensors").read_bytes() == b"w" * 130
    finally:
        reader.close()


def test_adapter_digest_ignores_the_order_peft_writes_target_modules_in(tmp_path: Path) -> None:
    """PEFT serialises ``target_modules`` (a set) in hash order, which differs per process: the
    raft and llm2vec checkpoint keys must not change when a new run rewrites the same adapter."""
    import json

    from monGARS.mlops.training.common.checkpoints import adapter_digest

    def adapter(folder: Path, modules: list[str], weights: bytes) -> Path:
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(weights)
        config = {"r": 8, "target_modules": modules}
        (folder / "adapter_config.json").write_text(json.dumps(config))
        return folder

    first = adapter(tmp_path / "a", ["q_proj", "v_proj", "o_proj"], b"w")
    second = adapter(tmp_path / "b", ["o_proj", "q_proj", "v_proj"], b"w")
    assert hash_tree(first) != hash_tree(second)  # what the keys used before
    assert adapter_digest(first) == adapter_digest(second)
    assert adapter_digest(first) != adapter_digest(adapter(tmp_path / "c", ["q_proj"], b"w"))
    assert adapter_digest(first) != adapter_digest(
        adapter(tmp_path / "d", ["q_proj", "v_proj", "o_proj"], b"x")
    )


def test_run_key_takes_file_names_that_are_not_utf8(tmp_path: Path) -> None:
    """A dataset file named in Latin-1 bytes reaches the key as a surrogate-escaped str
    (``os.fsdecode``); the key must hash it, not fail to encode it."""
    import os

    latin1 = os.fsdecode(b"caf\xe9.jsonl")
    assert latin1 == "caf\udce9.jsonl"
    key = run_key({"datasets": {latin1: "1"}})
    assert len(key) == 20
    assert key != run_key({"datasets": {"café.jsonl": "1"}})


def test_adapter_digest_reads_the_adapter_config_as_settings_not_bytes(tmp_path: Path) -> None:
    """The same settings written in another key order or spacing (another PEFT version, a
    rewrite by hand) are the same adapter; another value is not. Only that file is read as
    JSON: PEFT writes a README.md model card beside it."""
    import json

    from monGARS.mlops.training.common.checkpoints import adapter_digest

    settings = {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}
    folders = []
    for name, text in [
        ("a", json.dumps(settings)),
        ("b", json.dumps(dict(reversed(settings.items())), indent=2)),
        ("c", json.dumps({**settings, "lora_alpha": 32})),
    ]:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(b"w")
        (folder / "adapter_config.json").write_text(text)
        (folder / "README.md").write_text("# Model card\n")  # sorts before adapter_config.json
        folders.append(folder)
    first, reordered, other = (adapter_digest(folder) for folder in folders)
    assert first == reordered, "the key order of adapter_config.json changed the digest"
    assert first != other
