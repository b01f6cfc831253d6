"""The one atomic file write: old or new content, private mode, no temporary left behind."""

from pathlib import Path

import pytest

from protocol.files import remove_tree, write_atomic


def test_replaces_the_file_privately_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state.json"
    write_atomic(path, b"old")
    write_atomic(path, b"new")
    assert path.read_bytes() == b"new"
    assert (path.stat().st_mode & 0o777) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]


def test_a_failed_write_keeps_the_old_content(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_atomic(path, b"old")
    with pytest.raises(TypeError):
        write_atomic(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_remove_tree_removes_read_only_directories_without_following_links(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("kept")
    tree = tmp_path / "tree"
    (tree / "inputs" / "deep").mkdir(parents=True)
    (tree / "inputs" / "deep" / "data.bin").write_bytes(b"x")
    (tree / "inputs" / "link").symlink_to(outside, target_is_directory=True)
    for folder in (tree / "inputs" / "deep", tree / "inputs", tree):
        folder.chmod(0o555)
    outside.chmod(0o555)
    remove_tree(tree)
    assert not tree.exists()
    assert (outside / "keep.txt").read_text() == "kept"
    assert outside.stat().st_mode & 0o777 == 0o555  # the link's target was left as it was
    remove_tree(tree)  # gone already: nothing to do
