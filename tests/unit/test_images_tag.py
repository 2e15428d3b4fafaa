"""The image tag is a content hash: any change to what the images are built from changes it.

KFP's cache key holds the image string, so a tag that survives a code change serves stale cache
hits (docs/cluster.md). These tests build a small source tree and edit it file by file.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from monGARS.components import images

TREE = {
    "pyproject.toml": "[project]\nname = 'x'\n",
    "monGARS/version.py": '__version__ = "1.2.3"\n',
    "monGARS/mlops/stage.py": "VALUE = 1\n",
    "components/sft.py": "def sft():\n    pass\n",
    "pipelines/pipeline.py": "PIPELINE = 1\n",
    "requirements/cpu.txt": "torch==2.13.0\n",
    "images/Dockerfile.runtime": "FROM debian\n",
    "images/build-extra/README.md": "what build.sh puts here\n",
    "images/build-extra/.gitignore": "*\n",
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for relative, text in TREE.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("relative", sorted(TREE))
def test_a_content_change_in_any_image_source_changes_the_digest(tree: Path, relative: str) -> None:
    before = images.source_digest(tree)
    path = tree / relative
    path.write_text(path.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    after = images.source_digest(tree)
    assert after != before, f"editing {relative} kept the image digest {before}: stale cache hits"


def test_same_bytes_of_the_same_length_still_change_the_digest(tree: Path) -> None:
    """A one-character edit that keeps names, sizes and timestamps: only the bytes differ."""
    path = tree / "monGARS/mlops/stage.py"
    before = images.source_digest(tree)
    stat = path.stat()
    path.write_text("VALUE = 2\n", encoding="utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert images.source_digest(tree) != before, "the digest ignores file contents"


def test_renaming_adding_or_removing_a_source_changes_the_digest(tree: Path) -> None:
    digests = {images.source_digest(tree)}
    (tree / "monGARS/mlops/stage.py").rename(tree / "monGARS/mlops/renamed.py")
    digests.add(images.source_digest(tree))
    (tree / "components/new.py").write_text("", encoding="utf-8")
    digests.add(images.source_digest(tree))
    (tree / "images/Dockerfile.runtime").unlink()
    digests.add(images.source_digest(tree))
    # Moving bytes from one file to the next keeps the concatenation; the digest must still move.
    (tree / "components/new.py").write_text("def sft():\n", encoding="utf-8")
    (tree / "components/sft.py").write_text("    pass\n", encoding="utf-8")
    digests.add(images.source_digest(tree))
    assert len(digests) == 5


@pytest.mark.parametrize(
    "relative",
    [
        "pipelines/mongars.yaml",  # names the tag: hashing it would be circular
        "monGARS/__pycache__/stage.cpython-311.pyc",
        "monGARS/mlops/cache.pyc",
        "images/build-extra/torch-2.13.0-cp311.whl",  # build inputs pinned elsewhere
        "images/build-extra/ca-bundle.crt",
        "monGARS/model.gguf",
        "monGARS/weights.safetensors",
        "docs/anything.md",  # not an image source
        "tests/test_x.py",
    ],
)
def test_files_outside_the_images_do_not_change_the_digest(tree: Path, relative: str) -> None:
    before = images.source_digest(tree)
    path = tree / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not an image source")
    assert images.source_digest(tree) == before, f"{relative} must not change the image tag"


def test_digest_is_stable_and_short_and_none_outside_a_source_tree(
    tree: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    first = images.source_digest(tree)
    assert first == images.source_digest(tree)
    assert first is not None and len(first) == images.DIGEST_LENGTH
    assert int(first, 16) >= 0  # hex
    assert images.source_digest(tmp_path_factory.mktemp("empty")) is None
    (tree / "monGARS/mlops").rename(tree / "elsewhere")
    assert images.source_digest(tree) is not None  # still a tree: pyproject + monGARS/
    only_pyproject = tmp_path_factory.mktemp("pyproject-only")
    (only_pyproject / "pyproject.toml").write_text("", encoding="utf-8")
    assert images.source_digest(only_pyproject) is None


def test_package_version_is_read_from_the_tree(tree: Path, tmp_path: Path) -> None:
    assert images.package_version(tree) == "1.2.3"
    (tree / "monGARS/version.py").write_text('__version__ = "4.5.6rc1"\n', encoding="utf-8")
    assert images.package_version(tree) == "4.5.6rc1"


def test_tag_is_version_and_digest_and_the_override_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MONGARS_IMAGE_TAG", raising=False)
    monkeypatch.delenv("MONGARS_IMAGE_REGISTRY", raising=False)
    tag = images.image_tag()
    version, digest = tag.rsplit("-", 1)
    assert version == images.package_version() and digest == images.source_digest()
    assert images.image_ref("x") == f"{images.DEFAULT_REGISTRY}/x:{tag}"
    monkeypatch.setenv("MONGARS_IMAGE_TAG", "release-7")
    monkeypatch.setenv("MONGARS_IMAGE_REGISTRY", "registry.example/team/")
    assert images.image_ref("x") == "registry.example/team/x:release-7"


def test_uncommitted_sources_are_listed_but_not_the_compiled_yaml(tree: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tree, check=True, capture_output=True)

    git("init", "-q")
    git("add", "-A")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "x")
    assert images.uncommitted_image_sources(tree) == []
    (tree / "components/sft.py").write_text("changed\n", encoding="utf-8")
    (tree / "pipelines/mongars.yaml").write_text("compiled\n", encoding="utf-8")
    (tree / "docs").mkdir()
    (tree / "docs/x.md").write_text("not a source\n", encoding="utf-8")
    assert images.uncommitted_image_sources(tree) == ["components/sft.py"]


def test_version_falls_back_to_the_installed_package_then_to_zero(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from importlib.metadata import PackageNotFoundError

    (tree / "monGARS/version.py").unlink()
    monkeypatch.setattr(images, "version", lambda name: f"installed-{name}")
    assert images.package_version(tree) == "installed-mongars-mlops"

    def not_installed(name: str) -> str:
        raise PackageNotFoundError(name)

    monkeypatch.setattr(images, "version", not_installed)
    assert images.package_version(tree) == "0.0.0"


def test_no_git_means_no_uncommitted_sources(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tree / "nowhere"))  # git cannot be found: OSError
    assert images.uncommitted_image_sources(tree) == []
    monkeypatch.undo()
    assert images.uncommitted_image_sources(tree) == []  # not a checkout: git fails
