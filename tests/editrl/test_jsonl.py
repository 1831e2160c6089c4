"""Strict JSONL reading: blank lines skipped, line numbers counted from 1, errors name file:line."""

import pytest

from editrl.jsonl import JsonlError, iter_jsonl, parse_jsonl_line, read_jsonl


def test_reads_objects_skipping_blank_lines_with_file_line_numbers(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n\n   \n{"b": [2, 3]}\n')
    assert read_jsonl(path) == [{"a": 1}, {"b": [2, 3]}]
    assert list(iter_jsonl(path)) == [(1, {"a": 1}), (4, {"b": [2, 3]})]


def test_empty_file_is_an_empty_list(tmp_path):
    (tmp_path / "e.jsonl").write_text("")
    assert read_jsonl(tmp_path / "e.jsonl") == []


@pytest.mark.parametrize(
    ("bad_line", "problem"),
    [('{"a": ', "malformed JSON (Expecting value)"), ("[1, 2]", "malformed JSON (line is not an object)")],
)
def test_bad_line_is_an_error_naming_file_and_line(tmp_path, bad_line, problem):
    path = tmp_path / "b.jsonl"
    path.write_text(f'{{"ok": true}}\n\n{bad_line}\n{{"never": "read"}}\n')
    with pytest.raises(JsonlError) as err:
        read_jsonl(path)
    assert str(err.value) == f"{path}:3: {problem}"
    assert (err.value.path, err.value.line_no, err.value.problem) == (path, 3, problem)
    assert isinstance(err.value, ValueError)


def test_parse_line_accepts_bytes():
    assert parse_jsonl_line(b'{"k": "v"}', "x.jsonl", 7) == {"k": "v"}
    with pytest.raises(JsonlError, match=r"^x\.jsonl:7: malformed JSON \(line is not an object\)$"):
        parse_jsonl_line(b'"just a string"', "x.jsonl", 7)
