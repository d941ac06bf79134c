"""Mel spectrograms of real speech: column timing, the dB floor, parts with and without audio, an empty part."""

import subprocess

import numpy as np
import pyarrow as pa
import pytest
import torch

from affect.mel import SILENCE_DB, MelError, floor_db, mel_part, mel_spectrogram, read_wav
from affect.schema import AUDIO, MEL, Layout, write_part
from affect.shards import read_arrow, write_arrow
from affect.split import split_part
from tests.pipeline import params

PARAMS = {"sample_rate": 44100, "n_fft": 1024, "win_length": 882, "hop_length": 441, "n_mels": 64, "top_db": 80}


def wav(source, path, *filters: str, rate: int = 44100) -> None:
    """Mono s16 WAV of a media file's audio, through ffmpeg audio filters."""
    chain = ["-af", ",".join(filters)] if filters else []
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(source), "-vn", *chain, "-ac", "1",
                    "-ar", str(rate), "-c:a", "pcm_s16le", str(path)], check=True)


def test_column_c_is_centred_at_c_hops(media, tmp_path):
    wav(media / "grid_bbaf2n.mpg", tmp_path / "speech.wav")
    wav(media / "grid_bbaf2n.mpg", tmp_path / "late.wav", "adelay=1000:all=1")  # the same speech 1 s later
    speech, late = mel_spectrogram(tmp_path / "speech.wav", PARAMS), mel_spectrogram(tmp_path / "late.wav", PARAMS)
    n = len(read_wav(tmp_path / "speech.wav", 44100))
    assert speech.shape == (64, n // 441 + 1) and speech.dtype == np.float32
    assert speech.max() - speech.min() <= 80 + 1e-3
    assert np.abs(late[:, 100 + 5:100 + 200] - speech[:, 5:200]).max() < 0.05, "1 s later = 100 columns later"
    onset = np.flatnonzero(speech.max(axis=0) > speech.max() - 30)[0]
    assert np.flatnonzero(late.max(axis=0) > late.max() - 30)[0] == onset + 100


def test_silence_is_the_floor(tmp_path):
    silent = mel_spectrogram(np.zeros(44100, np.float32), PARAMS)
    assert np.all(silent == SILENCE_DB) and floor_db(silent, 80) == SILENCE_DB
    tone = np.concatenate([0.5 * np.sin(np.arange(44100) * 0.1), np.zeros(44100)]).astype(np.float32)
    mel = mel_spectrogram(tone, PARAMS)
    assert mel[:, -1].max() == pytest.approx(floor_db(mel, 80)) == pytest.approx(mel.max() - 80)


def test_wrong_rate_is_an_error_naming_the_file(media, tmp_path):
    wav(media / "grid_bbaf2n.mpg", tmp_path / "low.wav", rate=16000)
    with pytest.raises(MelError, match="low.wav.*16000 Hz"):
        mel_spectrogram(tmp_path / "low.wav", PARAMS)


def test_part_with_audio_without_audio_short_audio_and_an_empty_part(media, tmp_path):
    layout = Layout(tmp_path)
    split = layout.split(0)
    (split / "audio").mkdir(parents=True)
    wav(media / "grid_bbaf2n.mpg", split / "audio" / "full.wav")
    wav(media / "grid_bbaf2n.mpg", split / "audio" / "short.wav", "atrim=0:1")
    write_arrow(pa.Table.from_pylist([
        {"video": "short", "has_audio": True, "wav": "short.wav", "sample_rate": 44100, "n_samples": 44100},
        {"video": "mute", "has_audio": False, "wav": "", "sample_rate": 44100, "n_samples": 0},
        {"video": "full", "has_audio": True, "wav": "full.wav", "sample_rate": 44100, "n_samples": 0},
    ], schema=AUDIO), split / "audio.arrow")
    counts = mel_part(0, params({"audio": PARAMS, "mel": {"jobs": 2}}), layout)
    assert counts == {"videos": 3, "with_audio": 2, "without_audio": 1}
    table = read_arrow(layout.mel(0))
    assert table.schema == MEL and table.column("video").to_pylist() == ["full", "mute", "short"]
    rows = {r["video"]: r for r in table.to_pylist()}
    assert rows["mute"]["has_audio"] is False and rows["mute"]["n_cols"] == 0 and rows["mute"]["mel"] == []
    assert rows["short"]["n_cols"] == 44100 // 441 + 1 and rows["full"]["n_cols"] > 2 * rows["short"]["n_cols"]
    full = np.asarray(rows["full"]["mel"], np.float32).reshape(64, -1)
    assert np.array_equal(full, mel_spectrogram(split / "audio" / "full.wav", PARAMS))
    assert all(r["hop_s"] == 0.01 for r in rows.values())
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        mel_part(0, params({"audio": PARAMS, "mel": {"jobs": 1}}), layout)  # in this process, on one thread
        assert torch.get_num_threads() == 2, "a step run in-process must leave the caller's thread count"
    finally:
        torch.set_num_threads(before)
    assert read_arrow(layout.mel(0)).equals(table), "the same bytes in this process as in a pool"

    write_part({"part": 9, "videos": []}, layout.part_json(9))
    split_part(9, params({"split": {"jobs": 1}}), layout)
    assert mel_part(9, params({"mel": {"jobs": 1}}), layout) == {"videos": 0, "with_audio": 0, "without_audio": 0}
    assert read_arrow(layout.mel(9)).num_rows == 0
