"""``stylexport cache``: the engines stylize and bench exported for each checkpoint, listed with the checkpoint
they came from, and cleared: the stale ones by default (their checkpoint is gone or holds other weights), the
unused ones with --older-than, everything with --all; nothing outside the cache is ever touched."""

import json
import os
import shutil
import time

from typer.testing import CliRunner

from stylexport.cache import engines_root, entries
from stylexport.cli import app
from stylexport.fileio import sha256_file
from tests.conftest import one_line_error

runner = CliRunner()
MiB = 2**20


def fake_entry(checkpoint, *, sha=None, sizes=(MiB,), days_unused=0.0, fmt="onnx"):
    """A cache folder as open_cached leaves one: artifacts and an export.json naming their checkpoint."""
    sha = sha or sha256_file(checkpoint)
    folder = engines_root() / sha
    folder.mkdir(parents=True)
    for i, size in enumerate(sizes):
        (folder / f"m{i}.{fmt}").write_bytes(b"\0" * size)
    record = {"checkpoint": str(checkpoint), "checkpoint_sha256": sha,
              "artifacts": [{"path": str(folder / "m0.onnx"), "format": fmt, "passed": True}]}
    (folder / "export.json").write_text(json.dumps(record))
    size = sum(sizes) + (folder / "export.json").stat().st_size
    when = time.time() - days_unused * 86400
    os.utime(folder, (when, when))
    return folder, size


def cache_json():
    result = runner.invoke(app, ["cache", "list", "--json"])
    assert result.exit_code == 0, result.output
    return {e["sha256"]: e for e in json.loads(result.stdout)}


def test_entries_say_where_they_came_from_and_clear_takes_the_stale_then_the_old(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLEXPORT_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "kept.safetensors").write_bytes(b"weights kept")
    (tmp_path / "edited.safetensors").write_bytes(b"weights before")
    (tmp_path / "gone.safetensors").write_bytes(b"weights gone")
    kept, kept_size = fake_entry(tmp_path / "kept.safetensors", days_unused=40)
    edited, edited_size = fake_entry(tmp_path / "edited.safetensors", sizes=(2 * MiB, MiB))
    gone, gone_size = fake_entry(tmp_path / "gone.safetensors", sizes=(MiB // 2,), days_unused=1)
    (tmp_path / "edited.safetensors").write_bytes(b"weights after")  # other weights: its folder can never be used
    (tmp_path / "gone.safetensors").unlink()
    (engines_root() / "notes").mkdir()  # not a sha256: not the cache's, never listed or removed

    listed = cache_json()
    assert {e["state"] for e in listed.values()} == {"current", "checkpoint changed", "checkpoint gone"}
    assert listed[kept.name]["checkpoint"] == str(tmp_path / "kept.safetensors")
    assert listed[edited.name]["bytes"] == edited_size and listed[edited.name]["formats"] == ["onnx"]
    assert list(listed) == [edited.name, gone.name, kept.name]  # most recently used first
    table = runner.invoke(app, ["cache", "list"])
    assert table.exit_code == 0 and "40 days ago" in table.output
    assert f"3 checkpoints, {(kept_size + edited_size + gone_size) / MiB:.1f} MB; 2 stale " \
           f"({(edited_size + gone_size) / MiB:.1f} MB)" in table.output

    dry = runner.invoke(app, ["cache", "clear", "--dry-run"])
    assert dry.exit_code == 0 and f"would free {(edited_size + gone_size) / MiB:.1f} MB" in dry.output
    assert edited.is_dir() and gone.is_dir()
    result = runner.invoke(app, ["cache", "clear"])
    assert result.exit_code == 0, result.output
    assert f"removed {edited.name[:12]}" in result.output and f"removed {gone.name[:12]}" in result.output
    assert not edited.exists() and not gone.exists() and kept.is_dir() and (engines_root() / "notes").is_dir()
    assert "no entry is stale" in runner.invoke(app, ["cache", "clear"]).output

    assert "nothing is older than that" in runner.invoke(app, ["cache", "clear", "--older-than", "41"]).output
    result = runner.invoke(app, ["cache", "clear", "--older-than", "30"])
    assert f"freed {kept_size / MiB:.1f} MB" in result.output and not kept.exists()
    assert (tmp_path / "kept.safetensors").read_bytes() == b"weights kept"  # the checkpoint itself is never touched
    assert entries() == [] and (engines_root() / "notes").is_dir()


def test_stylize_records_the_checkpoint_and_runs_again_after_a_clear(tmp_path, monkeypatch, model_and_ckpt,
                                                                     make_image):
    monkeypatch.setenv("STYLEXPORT_CACHE_DIR", str(tmp_path / "cache"))
    _, ckpt = model_and_ckpt
    copy = tmp_path / "copy.safetensors"
    shutil.copy(ckpt, copy)
    photo = make_image("p.png", 40, 56)
    monkeypatch.chdir(tmp_path)  # a relative path is recorded as the absolute one
    first = runner.invoke(app, ["stylize", str(photo), "-m", "copy.safetensors", "-o", "a.png"])
    assert first.exit_code == 0, first.output
    (entry,) = entries()
    assert entry.checkpoint == str(copy) and entry.state == "current" and entry.sha256 == sha256_file(copy)
    assert entry.formats and entry.bytes > 0
    os.utime(entry.folder, (1, 1))
    again = runner.invoke(app, ["stylize", str(photo), "-m", "copy.safetensors", "-o", "b.png"])
    assert again.exit_code == 0 and "exporting" not in again.output
    assert entries()[0].last_used > time.time() - 600  # a cached engine's use is its folder's time

    copy.unlink()
    assert entries()[0].state == "checkpoint gone"
    assert runner.invoke(app, ["cache", "clear"]).exit_code == 0 and entries() == []
    third = runner.invoke(app, ["stylize", str(photo), "-m", str(ckpt), "-o", "c.png"])
    assert third.exit_code == 0, third.output  # exported again into the emptied cache


def test_an_empty_cache_and_contradictory_options(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLEXPORT_CACHE_DIR", str(tmp_path / "nothing-yet"))
    assert "is empty" in runner.invoke(app, ["cache", "list"]).output
    assert cache_json() == {}
    assert "the cache is empty" in runner.invoke(app, ["cache", "clear", "--all"]).output
    one_line_error(runner.invoke(app, ["cache", "clear", "--all", "--older-than", "3"]),
                   "pass --all or --older-than 3, not both")
    one_line_error(runner.invoke(app, ["cache", "clear", "--older-than", "-1"]), "--older-than -1: input should be")
    assert not (tmp_path / "nothing-yet").exists()  # listing and clearing make no folder


def test_max_size_takes_the_stale_then_the_least_recently_used_until_the_rest_fit(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLEXPORT_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("new", "mid", "old", "gone"):
        (tmp_path / f"{name}.safetensors").write_bytes(f"weights {name}".encode())
    new, new_size = fake_entry(tmp_path / "new.safetensors", sizes=(2 * MiB,))
    mid, mid_size = fake_entry(tmp_path / "mid.safetensors", sizes=(MiB,), days_unused=1)
    old, old_size = fake_entry(tmp_path / "old.safetensors", sizes=(MiB // 8,), days_unused=2)
    gone, _ = fake_entry(tmp_path / "gone.safetensors", sizes=(MiB // 8,), days_unused=3)
    (tmp_path / "gone.safetensors").unlink()

    # 2.5 MiB holds new but not mid as well; old would fit beside new, but it goes: an entry never outlives a
    # more recently used one. gone goes because it is stale.
    assert new_size + mid_size > 2.5 * MiB >= new_size + old_size
    dry = runner.invoke(app, ["cache", "clear", "--max-size", "2.5MB", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert all(f"would remove {f.name[:12]}" in dry.output for f in (mid, old, gone))
    assert new.name[:12] not in dry.output
    assert all(f.is_dir() for f in (new, mid, old, gone))
    assert runner.invoke(app, ["cache", "clear", "--max-size", "2.5MB"]).exit_code == 0
    assert [e.folder for e in entries()] == [new]
    assert "it fits already" in runner.invoke(app, ["cache", "clear", "--max-size", "3G"]).output
    monkeypatch.setenv("STYLEXPORT_CACHE_MAX_SIZE", "2.5MB")
    assert "(limit 2.5 MB: STYLEXPORT_CACHE_MAX_SIZE)" in runner.invoke(app, ["cache", "list"]).output
    # the most recent entry alone is over the limit: it goes, and so does every older one
    assert runner.invoke(app, ["cache", "clear", "--max-size", "1 MiB"]).exit_code == 0 and entries() == []

    one_line_error(runner.invoke(app, ["cache", "clear", "--max-size", "lots"]),
                   "--max-size lots is not a size; write it like 2GB, 500MB or 0")
    one_line_error(runner.invoke(app, ["cache", "clear", "--max-size", "1G", "--older-than", "2"]),
                   "pass --older-than 2 or --max-size 1G, not both")
    one_line_error(runner.invoke(app, ["cache", "clear", "--all", "--max-size", "1G", "--older-than", "2"]),
                   "pass --all or --older-than 2 or --max-size 1G, not all three")


def test_a_size_limit_in_the_environment_trims_the_cache_after_each_export(tmp_path, monkeypatch, model_and_ckpt,
                                                                           make_image):
    monkeypatch.setenv("STYLEXPORT_CACHE_DIR", str(tmp_path / "cache"))
    _, ckpt = model_and_ckpt
    (tmp_path / "older.safetensors").write_bytes(b"weights older")
    older, _ = fake_entry(tmp_path / "older.safetensors", sizes=(MiB,), days_unused=1)
    photo = make_image("p.png", 40, 56)

    monkeypatch.setenv("STYLEXPORT_CACHE_MAX_SIZE", "a lot")
    one_line_error(runner.invoke(app, ["stylize", str(photo), "-m", str(ckpt), "-o", str(tmp_path / "a.png")]),
                   "STYLEXPORT_CACHE_MAX_SIZE=a lot is not a size; write it like 2GB, 500MB or 0")
    assert [e.folder for e in entries()] == [older]  # refused before anything was exported or removed

    monkeypatch.setenv("STYLEXPORT_CACHE_MAX_SIZE", "1KB")  # below even the new export: it stays, older goes
    result = runner.invoke(app, ["stylize", str(photo), "-m", str(ckpt), "-o", str(tmp_path / "b.png")])
    assert result.exit_code == 0, result.output
    (entry,) = entries()
    assert entry.sha256 == sha256_file(ckpt) and entry.bytes > 1024 and not older.exists()
    assert (tmp_path / "b.png").is_file() and (tmp_path / "older.safetensors").is_file()
