"""manifest.jsonl after a kill: a row cut short is ignored, and the next row starts on a line of its own."""

from __future__ import annotations

from nodegraph.batch import read_rows
from nodegraph.batch.manifest import Manifest, file_prefix


def test_a_row_cut_short_by_a_kill_is_ignored_and_the_next_row_starts_on_its_own_line(tmp_path):
    (tmp_path / "manifest.jsonl").write_text('{"item": 0, "status": "done"}\n{"item": 1, "sta')
    with Manifest(tmp_path) as manifest:
        assert list(manifest.latest) == [0]
        manifest.append({"item": 1, "status": "done"})
    assert read_rows(tmp_path / "manifest.jsonl") == [{"item": 0, "status": "done"}, {"item": 1, "status": "done"}]


def test_file_names_sort_in_item_order():
    assert [file_prefix(i, 12) for i in (0, 11)] == ["00000", "00011"]
    assert file_prefix(7, 1_000_000) == "000007"  # wide enough for the largest index
