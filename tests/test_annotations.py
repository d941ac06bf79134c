"""ABAW annotation files: strict reading, byte-exact writing, reconciliation with the frame count."""

import numpy as np
import pytest

from affect.annotations import AnnotationError, read_annotation, reconcile, write_annotation
from affect.schema import AUS, EXPRESSIONS

VA_HEADER = "valence,arousal"
EXPR_HEADER = ",".join(EXPRESSIONS)
AU_HEADER = ",".join(AUS)

VA_TEXT = f"{VA_HEADER}\n0.5,-0.25\n-5,-5\n0.123,1\n-1,0\n0.3,-5\n"
EXPR_TEXT = f"{EXPR_HEADER}\n0\n6\n-1\n3\n"
AU_TEXT = f"{AU_HEADER}\n" + "\n".join([
    "0,1,0,0,0,0,1,0,0,0,1,1",
    "-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1",
    "1,1,1,1,1,1,1,1,1,1,1,1",
]) + "\n"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("task,text", [("va", VA_TEXT), ("expr", EXPR_TEXT), ("au", AU_TEXT)])
def test_read_then_write_gives_the_same_bytes(tmp_path, task, text):
    source = write(tmp_path, f"{task}.txt", text)
    annotation = read_annotation(source, task)
    write_annotation(annotation, tmp_path / "copy.txt", task)
    assert (tmp_path / "copy.txt").read_bytes() == source.read_bytes()
    write_annotation(annotation.values, tmp_path / "values.txt", task)
    assert (tmp_path / "values.txt").read_bytes() == source.read_bytes()


def test_values_and_labelled_mask(tmp_path):
    va = read_annotation(write(tmp_path, "va.txt", VA_TEXT), "va")
    assert va.values.dtype == np.float32 and va.values.shape == (5, 2)
    assert va.labelled.tolist() == [True, False, True, True, False]  # -5 in either column: not annotated
    np.testing.assert_allclose(va.values[0], [0.5, -0.25])
    expr = read_annotation(write(tmp_path, "expr.txt", EXPR_TEXT), "expr")
    assert expr.values.dtype == np.int8 and expr.values.tolist() == [0, 6, -1, 3]
    assert expr.labelled.tolist() == [True, True, False, True]
    au = read_annotation(write(tmp_path, "au.txt", AU_TEXT), "au")
    assert au.values.shape == (3, 12) and au.labelled.tolist() == [True, False, True]


def test_windows_line_ends_and_header_only_file(tmp_path):
    crlf = read_annotation(write(tmp_path, "crlf.txt", EXPR_TEXT.replace("\n", "\r\n")), "expr")
    assert crlf.values.tolist() == [0, 6, -1, 3]
    assert len(read_annotation(write(tmp_path, "header.txt", VA_HEADER + "\n"), "va")) == 0


@pytest.mark.parametrize("task,text,line,words", [
    ("va", "valence;arousal\n0,0\n", 1, "header"),
    ("expr", VA_HEADER + "\n0\n", 1, "header"),
    ("va", f"{VA_HEADER}\n0.1,0.2\n0.1,abc\n", 3, "not a number"),
    ("expr", f"{EXPR_HEADER}\n1\nhappy\n", 3, "not an integer"),
    ("va", f"{VA_HEADER}\n0.1,0.2\n0.1,1.5\n", 3, "outside [-1, 1]"),
    ("va", f"{VA_HEADER}\nnan,0\n", 2, "outside [-1, 1]"),
    ("expr", f"{EXPR_HEADER}\n7\n", 2, "expression 0..6"),
    ("au", f"{AU_HEADER}\n0,1,0,0,0,0,1,0,0,0,1,2\n", 2, "AU value 0 or 1"),
    ("va", f"{VA_HEADER}\n0.1,0.2,0.3\n", 2, "3 column(s), expected 2"),
    ("au", f"{AU_HEADER}\n0,1,0\n", 2, "3 column(s), expected 12"),
    ("va", f"{VA_HEADER}\n0.1,0.2\n\n0.1,0.2\n", 3, "1 column(s), expected 2"),
    ("va", "", 1, "empty file"),
    ("au", "\n", 1, "empty file"),
])
def test_bad_files_name_the_file_and_the_line(tmp_path, task, text, line, words):
    path = write(tmp_path, "bad_track.txt", text)
    with pytest.raises(AnnotationError) as error:
        read_annotation(path, task)
    assert f"{path}:{line}:" in str(error.value)
    assert words in str(error.value)


def test_reconcile_drops_extra_rows_and_unlabels_missing_ones(tmp_path):
    annotation = read_annotation(write(tmp_path, "expr.txt", EXPR_TEXT), "expr")  # 4 rows, 3 labelled
    same, note = reconcile(annotation, 4)
    assert same is annotation and note == ""

    shorter, note = reconcile(annotation, 2)
    assert shorter.values.tolist() == [0, 6] and shorter.labelled.tolist() == [True, True]
    assert "4 annotation rows for 2 video frames" in note and "(1 labelled)" in note

    longer, note = reconcile(annotation, 6)
    assert longer.values.tolist() == [0, 6, -1, 3, -1, -1]  # never shifted: row i stays frame i
    assert longer.labelled.tolist() == [True, True, False, True, False, False]
    assert "the last 2 frames are unlabelled" in note

    va = read_annotation(write(tmp_path, "va.txt", VA_TEXT), "va")
    padded, _ = reconcile(va, 7)
    assert padded.values.shape == (7, 2) and not padded.labelled[5:].any()
    assert (padded.values[5:] == -5).all()
