"""Data-parallel helpers: the global batch split, shards, one writer, refusals, gathered losses."""

from __future__ import annotations

from pathlib import Path

import pytest

from monGARS.mlops.errors import ConfigError, MongarsError
from monGARS.mlops.training.common.checkpoints import MARKER, CheckpointStore, checkpoint_callback
from monGARS.mlops.training.common.distributed import (
    World,
    current_world,
    main_writes,
    shard,
    split_batch,
)
from monGARS.mlops.training.sft.config import load_sft_config


@pytest.mark.parametrize(
    ("batch_size", "accumulation", "ranks", "expected"),
    [
        (4, 4, 1, (4, 4)),  # one process: as configured
        (4, 4, 2, (4, 2)),  # 4 x 2 per rank x 2 ranks = 16
        (4, 4, 8, (2, 1)),  # share 2 < batch_size: smaller micro batch
        (2, 2, 2, (2, 1)),
        (8, 1, 4, (2, 1)),
        (6, 2, 4, (3, 1)),  # share 3: largest divisor not above 6
        (5, 4, 2, (5, 2)),
    ],
)
def test_split_keeps_the_global_batch(
    batch_size: int, accumulation: int, ranks: int, expected: tuple[int, int]
) -> None:
    micro, per_rank = split_batch(batch_size, accumulation, ranks)
    assert (micro, per_rank) == expected
    assert micro * per_rank * ranks == batch_size * accumulation
    assert micro <= batch_size


def test_split_refuses_a_batch_that_does_not_divide() -> None:
    with pytest.raises(MongarsError) as caught:
        split_batch(3, 1, 2)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("batch_size: ")
    assert "3 x 1 = 3" in message and "2 ranks" in message


def test_config_refuses_a_batch_that_does_not_divide_across_num_processes() -> None:
    with pytest.raises(ConfigError) as caught:
        load_sft_config({"batch_size": 3, "gradient_accumulation_steps": 3, "num_processes": 2})
    assert caught.value.problems == [
        "batch_size: the global batch batch_size x gradient_accumulation_steps = 3 x 3 = 9 does "
        "not divide across 2 ranks; make it a multiple of 2"
    ]
    load_sft_config({"batch_size": 3, "gradient_accumulation_steps": 2, "num_processes": 2})
    load_sft_config({"batch_size": 3, "gradient_accumulation_steps": 3, "num_processes": 0})


def test_cli_refuses_the_batch_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from monGARS.mlops.training.sft.cli import main

    arguments = ["--base-model", str(tmp_path), "--datasets", str(tmp_path), "--module", "m"]
    arguments += ["--out", str(tmp_path / "out"), "--set", "num_processes=4"]
    code = main([*arguments, "--set", "batch_size=2", "--set", "gradient_accumulation_steps=1"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "batch_size:" in err and "4 ranks" in err
    assert not (tmp_path / "out").exists()


def test_shards_are_contiguous_and_cover_everything() -> None:
    for count in (0, 1, 5, 8, 13):
        for size in (1, 2, 3, 8):
            parts = [shard(count, World(size, rank, rank)) for rank in range(size)]
            covered = [i for part in parts for i in range(count)[part]]
            assert covered == list(range(count))
            lengths = [len(range(count)[part]) for part in parts]
            assert max(lengths) - min(lengths) <= 1


def test_world_comes_from_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert current_world() == World(1, 0, 0) and current_world().is_main
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "3")
    world = current_world()
    assert world == World(4, 3, 3) and world.distributed and not world.is_main


def test_only_rank_zero_writes_the_output(tmp_path: Path) -> None:
    with main_writes(World(2, 1, 1), tmp_path / "out") as scratch:
        assert scratch is None
    assert list(tmp_path.iterdir()) == []
    with main_writes(World(2, 0, 0), tmp_path / "out") as scratch:
        assert scratch is not None
        (scratch / "a.txt").write_text("x")
    assert (tmp_path / "out" / "a.txt").read_text() == "x"


def test_only_rank_zero_marks_a_checkpoint(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path), "run")
    checkpoint = store.local_dir / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    (checkpoint / "optimizer.pt").write_bytes(b"o")

    class _State:
        global_step = 2

    class _Args:
        output_dir = str(store.local_dir)

    checkpoint_callback(store, World(2, 1, 1)).on_save(_Args(), _State(), None)
    assert not (checkpoint / MARKER).exists()
    checkpoint_callback(store, World(2, 0, 0)).on_save(_Args(), _State(), None)
    assert (checkpoint / MARKER).is_file()


def test_several_ranks_pick_hf_unless_unsloth_is_asked_for() -> None:
    from monGARS.mlops.training.common.backends import (
        Environment,
        probes_unsloth,
        select_backend,
    )

    gpu = Environment(cuda=True, unsloth=True, bf16=True)
    assert select_backend("auto", gpu, 1) == "unsloth"
    assert select_backend("auto", gpu, 2) == "hf"
    assert select_backend("unsloth", gpu, 8) == "unsloth"
    # Unsloth patches transformers when imported: only a run that may use it imports it.
    assert probes_unsloth("auto", 1) and probes_unsloth("unsloth", 4)
    assert not probes_unsloth("auto", 2) and not probes_unsloth("hf", 1)
