"""Mel spectrograms of the videos' audio, in dB, one row per video (schema MEL).

TSAV's audio front end (docs/method.md, "Preprocessing"): mono waveform scaled to [-1, 1], torchaudio
`MelSpectrogram` (Hann window, power 2) and `AmplitudeToDB("power", top_db)`. The dB values are stored
as they are; the loader normalises them with `audio.mean` / `audio.std`. `center=True` pads the
waveform by n_fft / 2 on both sides, so column c is centred on sample c * hop_length, i.e. at time
c * hop_s: a frame at time t maps to column round(t / hop_s).

The floor: `AmplitudeToDB` clamps powers below 1e-10 (-100 dB) and then everything below the
recording's peak minus `top_db`. A silent (all-zero) waveform therefore gives SILENCE_DB everywhere,
and zero samples appended to a recording give `floor_db(mel, top_db)`. The loader pads with that
value where the audio ends before the video, and uses SILENCE_DB for videos without audio.

`mel_part` is the mel stage of one part; one video is one unit of work (`mel_one`).
"""

from __future__ import annotations

import logging
import os
import wave
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import torch
import torchaudio

from affect.exact import on_grid, torch_threads
from affect.parallel import run_units
from affect.schema import MEL, Layout
from affect.shards import atomic_path, read_arrow

log = logging.getLogger(__name__)

AMIN = 1e-10
SILENCE_DB = -100.0  # dB: what AmplitudeToDB gives for a zero waveform, 10 log10(AMIN)
DB_STEP = 1 / 256    # dB: grid of the stored spectrogram values


class MelError(ValueError):
    """A WAV file that cannot be turned into a mel spectrogram."""


CHUNK_COLUMNS = 1024  # spectrogram columns computed at a time: memory stays the same for any length of audio


def _wav_reader(path: Path, sample_rate: int) -> tuple[int, Callable[[int, int], np.ndarray]]:
    """(number of samples, read(start, stop) -> float64 samples [start, stop)) of a mono 16-bit PCM WAV;
    MelError if it is not mono s16 at `sample_rate`."""
    try:
        f = wave.open(str(path), "rb")
        channels, width, rate, n = f.getnchannels(), f.getsampwidth(), f.getframerate(), f.getnframes()
    except (OSError, EOFError, wave.Error) as e:
        raise MelError(f"{path}: not a readable WAV file ({e})") from None
    if channels != 1 or width != 2 or rate != sample_rate:
        f.close()
        raise MelError(f"{path}: expected mono 16-bit PCM at {sample_rate} Hz, got {channels} channel(s), "
                       f"{8 * width}-bit, {rate} Hz (rerun the split stage with audio.sample_rate={sample_rate})")

    def read(start: int, stop: int) -> np.ndarray:
        try:
            f.setpos(start)
            data = f.readframes(stop - start)
        except (OSError, EOFError, wave.Error) as e:
            raise MelError(f"{path}: not a readable WAV file ({e})") from None
        if len(data) != 2 * (stop - start):
            raise MelError(f"{path}: truncated WAV file ({n} samples announced)")
        return np.frombuffer(data, dtype="<i2").astype(np.float64) / 32768.0
    return n, read


def read_wav(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """Mono 16-bit PCM WAV as float32 in [-1, 1]; MelError if it is not mono s16 at `sample_rate`."""
    n, read = _wav_reader(Path(path), sample_rate)
    return read(0, n).astype(np.float32)


def hop_seconds(params: dict) -> float:
    """Seconds between mel columns."""
    return params["hop_length"] / params["sample_rate"]


def reflect_indices(start: int, stop: int, n: int) -> np.ndarray:
    """Sample indices [start, stop) of a signal of n samples reflect-padded on both sides (torch's "reflect"
    mode: index -1 is sample 1, index n is sample n - 2); needs stop - n < n and -start < n."""
    j = np.arange(start, stop)
    j = np.where(j < 0, -j, j)
    return np.where(j >= n, 2 * (n - 1) - j, j)


def mel_spectrogram(wav: str | os.PathLike | np.ndarray | torch.Tensor, params: dict) -> np.ndarray:
    """(n_mels, n_cols) float32 dB spectrogram of a WAV file or a mono waveform in [-1, 1].

    `params` is the `audio` group: sample_rate, n_fft, win_length, hop_length, n_mels, top_db.
    n_cols = n_samples // hop_length + 1; column c is centred at c * hop_length / sample_rate seconds.
    The power spectrogram is torchaudio's (centred frames, reflect padding), in float64; the mel projection
    (torchaudio's filter bank) and the dB conversion (AmplitudeToDB's formula: 10 log10(max(power, AMIN)),
    floored at the peak minus top_db) are done here in float64 numpy, and the result is rounded to multiples
    of DB_STEP. The FFT and matrix kernels differ in the last bits between processors (and torch's float64
    matmul loses precision on some of its paths); at float64 that noise reaches the stored values with odds of
    about 1e-12 each. The columns are computed CHUNK_COLUMNS at a time from the samples they need (a WAV file
    is read chunk by chunk), so memory holds the dB values and one chunk, whatever the length of the audio.
    """
    if isinstance(wav, (str, os.PathLike)):
        n, read = _wav_reader(Path(wav), params["sample_rate"])
    else:
        waveform = np.asarray(wav, dtype=np.float64).reshape(-1)
        n, read = len(waveform), lambda start, stop: waveform[start:stop]
    n_fft, hop, half = params["n_fft"], params["hop_length"], params["n_fft"] // 2
    if n <= half:  # too short to reflect: zero-padded first, as before
        short = np.zeros(half + 1)
        short[:n] = read(0, n)
        n, read = half + 1, lambda start, stop: short[start:stop]
    spectrogram = torchaudio.transforms.Spectrogram(
        n_fft=n_fft, win_length=params["win_length"], hop_length=hop,
        window_fn=torch.hann_window, power=2.0, center=False, wkwargs={"dtype": torch.float64})
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)     # the filter bank computed in float64, not rounded from float32
    try:
        filters = torchaudio.functional.melscale_fbanks(
            n_freqs=n_fft // 2 + 1, f_min=0.0, f_max=params["sample_rate"] / 2, n_mels=params["n_mels"],
            sample_rate=params["sample_rate"], norm=None, mel_scale="htk").numpy()
    finally:
        torch.set_default_dtype(default)
    n_cols = n // hop + 1
    db = np.empty((params["n_mels"], n_cols), np.float64)
    for c0 in range(0, n_cols, CHUNK_COLUMNS):
        c1 = min(c0 + CHUNK_COLUMNS, n_cols)
        index = reflect_indices(c0 * hop - half, (c1 - 1) * hop - half + n_fft, n)  # the frames' samples
        lo = int(index.min())
        samples = read(lo, int(index.max()) + 1)[index - lo]
        with torch.no_grad(), torch_threads(1):  # one thread: the same bytes in any process, whatever `jobs`
            power = spectrogram(torch.from_numpy(np.ascontiguousarray(samples)).reshape(1, -1))[0].numpy()
        db[:, c0:c1] = 10.0 * np.log10(np.maximum(filters.T @ power, AMIN))
    db = np.maximum(db, db.max() - params["top_db"])
    return on_grid(db, DB_STEP).astype(np.float32)


def floor_db(mel: np.ndarray, top_db: float) -> float:
    """The dB value zero samples get in a spectrogram with this peak: max(-100, peak - top_db)."""
    if mel.size == 0:
        return SILENCE_DB
    return max(SILENCE_DB, float(mel.max()) - top_db)


def mel_row(video: str, mel: np.ndarray | None, hop_s: float, n_mels: int) -> pa.RecordBatch:
    """One MEL row; `mel` None for a video without audio."""
    values = np.zeros(0, np.float32) if mel is None else np.ascontiguousarray(mel, np.float32).ravel()
    column = pa.ListArray.from_arrays(pa.array([0, values.size], pa.int32()), pa.array(values, pa.float32()))
    return pa.RecordBatch.from_arrays([
        pa.array([video], pa.string()),
        pa.array([mel is not None], pa.bool_()),
        pa.array([hop_s], pa.float64()),
        pa.array([n_mels], pa.int32()),
        pa.array([0 if mel is None else mel.shape[1]], pa.int32()),
        column,
    ], schema=MEL)


def mel_one(unit: tuple[dict, str, dict]) -> pa.RecordBatch:
    """One unit of work: (an audio.arrow row, the split folder, the `audio` params) -> the video's MEL row."""
    row, split_dir, params = unit
    hop_s = hop_seconds(params)
    if not row["has_audio"]:
        log.info("%s: no audio track, stored without a spectrogram (the loader feeds silence)", row["video"])
        return mel_row(row["video"], None, hop_s, params["n_mels"])
    if row["sample_rate"] != params["sample_rate"]:
        raise MelError(f"{Path(split_dir) / 'audio.arrow'}: {row['video']} has sample_rate "
                       f"{row['sample_rate']}, params audio.sample_rate is {params['sample_rate']}")
    mel = mel_spectrogram(Path(split_dir) / "audio" / row["wav"], params)
    return mel_row(row["video"], mel, hop_s, params["n_mels"])


def mel_part(part: int, params: dict, layout: Layout) -> dict[str, int]:
    """The mel stage for one part: the spectrogram of every video of `layout.split(part)` (audio.arrow +
    audio/*.wav) into `layout.mel(part)`. Params: the `audio` group, mel.jobs.

    Written one record batch per video as the videos come (memory stays a few videos' worth), atomically.
    Returns counts: videos, with_audio, without_audio.
    """
    split_dir = layout.split(part)
    audio = read_arrow(split_dir / "audio.arrow").sort_by("video").to_pylist()
    units = [(row, str(split_dir), params["audio"]) for row in audio]
    with atomic_path(layout.mel(part)) as tmp:
        with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, MEL) as writer:
            for batch in run_units(mel_one, units, params["mel"]["jobs"], f"mel part {part}",
                                   executor=params.get("executor")):
                writer.write_batch(batch)
    with_audio = sum(row["has_audio"] for row in audio)
    return {"videos": len(audio), "with_audio": with_audio, "without_audio": len(audio) - with_audio}
