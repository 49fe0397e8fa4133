"""``manifest.jsonl``: rows appended and flushed one by one, read back tolerantly."""

from __future__ import annotations

import pytest

from oldphoto_core.cli.manifest import ManifestRow, ManifestWriter, last_rows, read_manifest


def test_rows_append_and_the_last_row_of_an_input_wins(tmp_path):
    with ManifestWriter(tmp_path) as m:
        m.write(ManifestRow("a.png", "out/a.png", "failed", error="boom", seconds=0.25))
        m.write(ManifestRow("b.png", "out/b.png", "restored", mode="quality", size=(40, 30),
                            seconds=1.23456))
        # flushed at once: a reader sees the rows while the run goes on
        assert len(read_manifest(tmp_path / "manifest.jsonl")) == 2
    with ManifestWriter(tmp_path) as m:      # a rerun appends
        m.write(ManifestRow("a.png", "out/a.png", "restored", mode="scratch", size=(8, 8)))
    rows = read_manifest(tmp_path / "manifest.jsonl")
    assert [r["status"] for r in rows] == ["failed", "restored", "restored"]
    assert rows[1]["size"] == [40, 30] and rows[1]["seconds"] == 1.235 and rows[1]["time"]
    assert last_rows(tmp_path / "manifest.jsonl")["a.png"]["mode"] == "scratch"


def test_a_line_cut_by_a_killed_run_is_left_out(tmp_path):
    path = tmp_path / "manifest.jsonl"
    path.write_text('{"input": "a.png", "status": "restored"}\n{"input": "b.p')
    assert [r["input"] for r in read_manifest(path)] == ["a.png"]
    assert read_manifest(tmp_path / "none.jsonl") == []


def test_unknown_status_is_refused():
    with pytest.raises(ValueError, match="status"):
        ManifestRow("a.png", None, "done")


def test_the_tally_keeps_every_failure_and_only_the_first_skips():
    from oldphoto_core.cli.manifest import ManifestRow, Tally
    tally = Tally()
    for i in range(Tally.SHOWN + 5):
        tally.add(ManifestRow(f"s{i}.png", f"o/s{i}.png", "skipped"))
    for i in range(30):
        tally.add(ManifestRow(f"f{i}.png", None, "failed", error="broken"))
    tally.add(ManifestRow("r.png", "o/r.png", "restored"))
    assert tally.counts == {"restored": 1, "skipped": Tally.SHOWN + 5, "failed": 30}
    assert tally.total == Tally.SHOWN + 36
    assert len(tally.skipped) == Tally.SHOWN and len(tally.failed) == 30
