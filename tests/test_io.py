"""hf_stackshape.utils.io: atomic writes, JSONL, and prompt loading from files and datasets."""

import hashlib
import json
import os

import pytest
from datasets import Dataset, DatasetDict

from hf_stackshape.utils import io as shio


def test_atomic_writes_round_trip_and_leave_no_temp_files(tmp_path):
    shio.atomic_write_text(tmp_path / "sub" / "a.txt", "héllo")
    assert (tmp_path / "sub" / "a.txt").read_text(encoding="utf-8") == "héllo"
    shio.atomic_write_json(tmp_path / "b.json", {"x": [1, 2.5], "s": "é"})
    assert shio.read_json(tmp_path / "b.json") == {"x": [1, 2.5], "s": "é"}
    rows = [{"a": 1, "b": "ü"}, {"a": 2, "b": [0.1, -3e-9]}]
    digest = shio.atomic_write_jsonl(tmp_path / "c.jsonl", rows)
    assert digest == hashlib.sha256((tmp_path / "c.jsonl").read_bytes()).hexdigest()
    assert shio.read_jsonl(tmp_path / "c.jsonl") == rows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json", "c.jsonl", "sub"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "keep.json"
    shio.atomic_write_json(target, {"v": 1})

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(shio.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        shio.atomic_write_json(target, {"v": 2})
    monkeypatch.undo()
    assert shio.read_json(target) == {"v": 1}
    assert os.listdir(tmp_path) == ["keep.json"]


def test_read_jsonl_errors_name_the_line(tmp_path):
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"prompt": "a"}\n\n{"prompt": \n')
    with pytest.raises(ValueError, match="line 3 is not valid JSON"):
        shio.read_jsonl(bad_json)
    bad_utf8 = tmp_path / "bad_utf8.jsonl"
    bad_utf8.write_bytes(b'{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": "\xff\xfe"}\n')
    with pytest.raises(ValueError, match=r"line 3 is not valid UTF-8 \(byte 0xff\)"):
        shio.load_prompts(bad_utf8)


def test_load_prompts_from_files(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"prompt": "a", "id": 1}\n"b"\n\n{"prompt": "a"}\n')
    assert shio.load_prompts(tmp_path / "p.jsonl") == ["a", "b", "a"]
    assert shio.load_prompts(tmp_path / "p.jsonl", limit=2) == ["a", "b"]
    (tmp_path / "q.jsonl").write_text('{"question": "x"}\n{"question": "y, z"}\n')
    assert shio.load_prompts(tmp_path / "q.jsonl", column="question") == ["x", "y, z"]
    with pytest.raises(ValueError, match=r"line 1 has no string field 'prompt' \(fields: \['question'\]\)"):
        shio.load_prompts(tmp_path / "q.jsonl")
    (tmp_path / "p.csv").write_text('id,text\n1,"hello, world"\n2,"two\nlines"\n', encoding="utf-8")
    assert shio.load_prompts(tmp_path / "p.csv", column="text") == ["hello, world", "two\nlines"]
    with pytest.raises(ValueError, match=r"no column 'prompt'; the header has \['id', 'text'\]"):
        shio.load_prompts(tmp_path / "p.csv")
    (tmp_path / "p.json").write_text(json.dumps([{"prompt": "j1"}, "j2"]))
    assert shio.load_prompts(tmp_path / "p.json") == ["j1", "j2"]
    (tmp_path / "p.txt").write_text("t1\n\n t2\n")
    assert shio.load_prompts(tmp_path / "p.txt") == ["t1", " t2"]
    (tmp_path / "p.parquet").write_text("x")
    with pytest.raises(ValueError, match="unsupported prompt file type"):
        shio.load_prompts(tmp_path / "p.parquet")
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        shio.load_prompts(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="exactly one prompt source"):
        shio.load_prompts()
    with pytest.raises(ValueError, match="exactly one prompt source"):
        shio.load_prompts(tmp_path / "p.txt", dataset="x")


def test_load_prompts_from_datasets(tmp_path):
    ds = Dataset.from_dict({"text": ["d1", "d2", "d3"], "n": [1, 2, 3]})
    ds.save_to_disk(str(tmp_path / "saved"))
    assert shio.load_prompts(dataset=str(tmp_path / "saved"), column="text", limit=2) == ["d1", "d2"]
    DatasetDict({"test": ds}).save_to_disk(str(tmp_path / "dict"))
    from_dict = shio.load_prompts(dataset=str(tmp_path / "dict"), split="test", column="text")
    assert from_dict == ["d1", "d2", "d3"]
    # A folder of data files goes through datasets.load_dataset, like a Hub id.
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "train.jsonl").write_text('{"prompt": "r1"}\n{"prompt": "r2"}\n')
    assert shio.load_prompts(dataset=str(tmp_path / "raw"), split="train") == ["r1", "r2"]
    with pytest.raises(ValueError, match=r"no column 'prompt'; its columns are \['text', 'n'\]"):
        shio.load_prompts(dataset=str(tmp_path / "saved"))
    with pytest.raises(ValueError, match="row 0 is a int"):
        shio.prompts_from_dataset(ds, "n")


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_atomic_writes_follow_the_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        shio.atomic_write_json(tmp_path / "a.json", {"v": 1})
        shio.append_jsonl(tmp_path / "b.jsonl", [{"v": 1}])
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == mode
    assert (tmp_path / "b.jsonl").stat().st_mode & 0o777 == mode
    # Replacing a file keeps its mode (a user's chmod survives a rewrite).
    os.chmod(tmp_path / "a.json", 0o600)
    shio.atomic_write_json(tmp_path / "a.json", {"v": 2})
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o600


def test_torn_jsonl_line_is_ignored_repaired_and_never_merged(tmp_path, caplog):
    path = tmp_path / "rows.jsonl"
    shio.append_jsonl(path, [{"i": 0}, {"i": 1}])
    shio.append_jsonl(path, [{"i": 2}])
    assert shio.read_jsonl(path) == [{"i": 0}, {"i": 1}, {"i": 2}]
    # A write killed half-way: a last line with no newline, here even valid JSON on its own.
    with open(path, "ab") as handle:
        handle.write(b'{"i": 3}')
    assert shio.read_jsonl(path) == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert shio.read_jsonl(path, complete_lines_only=False)[-1] == {"i": 3}
    with open(path, "ab") as handle:
        handle.write(b', "tail": "cut he')
    # The next append cuts the torn line off first: the new row is a line of its own.
    shio.append_jsonl(path, [{"i": 4}])
    assert path.read_bytes().endswith(b'{"i": 2}\n{"i": 4}\n')
    assert shio.read_jsonl(path) == [{"i": 0}, {"i": 1}, {"i": 2}, {"i": 4}]
    with open(path, "ab") as handle:
        handle.write(b'{"i"')
    assert shio.repair_jsonl(path) == 4 and shio.repair_jsonl(path) == 0
    assert shio.read_jsonl(path, complete_lines_only=False) == [{"i": 0}, {"i": 1}, {"i": 2}, {"i": 4}]
    one = tmp_path / "one.jsonl"
    one.write_bytes(b'{"torn": ')
    assert shio.repair_jsonl(one) == 9 and one.read_bytes() == b""
    assert shio.repair_jsonl(tmp_path / "missing.jsonl") == 0


def test_remove_temp_files_only_touches_temp_names(tmp_path):
    (tmp_path / ".a.json.x1.tmp").write_text("half")
    (tmp_path / ".b.json.x1.tmp").write_text("half")
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "notes.tmp").write_text("a visible file is the user's")
    removed = shio.remove_temp_files(tmp_path, "a.json")
    assert [p.name for p in removed] == [".a.json.x1.tmp"]
    shio.remove_temp_files(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["a.json", "notes.tmp"]


@pytest.mark.parametrize(
    "name, content, where",
    [
        ("p.jsonl", '{"prompt": "a"}\n\n{"prompt": ""}\n', "p.jsonl: line 3, field 'prompt', is an empty prompt"),
        ("p.jsonl", '"a"\n"   "\n', "p.jsonl: line 2 is an empty prompt"),
        ("p.json", json.dumps(["a", {"prompt": " "}]), "p.json: item 2, field 'prompt', is an empty prompt"),
        ("p.csv", 'prompt,id\na,1\n,2\n', "p.csv: line 3, column 'prompt', is an empty prompt"),
    ],
)
def test_empty_prompts_are_one_error_in_every_format(tmp_path, name, content, where):
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=where):
        shio.load_prompts(tmp_path / name)


def test_empty_prompts_in_a_dataset_and_blank_txt_lines(tmp_path):
    with pytest.raises(ValueError, match="column 'prompt': row 1 is an empty prompt"):
        shio.prompts_from_dataset(Dataset.from_dict({"prompt": ["a", ""]}))
    # A .txt file cannot hold an empty prompt: its blank lines only separate prompts.
    (tmp_path / "p.txt").write_text("a\n\n   \nb")
    assert shio.load_prompts(tmp_path / "p.txt") == ["a", "b"]
    # A hand-written .jsonl without a final newline keeps its last prompt.
    (tmp_path / "p.jsonl").write_text('{"prompt": "a"}\n{"prompt": "b"}')
    assert shio.load_prompts(tmp_path / "p.jsonl") == ["a", "b"]
