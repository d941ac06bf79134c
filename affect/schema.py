"""The columns of every table the pipeline writes: one place to read them, one place to change them.

Per-part shards (`data/interim/<stage>/part-<p>/shard-*.arrow`) of the face stages line up row for
row: row i of a `faces` shard, the `landmarks` shard of the same name and the `masks` shard of the
same name describe the same (track, frame). Rows are ordered by track name, then frame.
Times are seconds on the video's presentation timeline, where 0 is the first video frame.
"""

import pyarrow as pa

TASKS = ("va", "expr", "au")
EXPRESSIONS = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise")
AUS = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26")
CROP_SIZE = 112  # TSAV's crop side, pixels: the default of align.crop_size
N_LANDMARKS = 106

# index stage: data/interim/index/videos.parquet, one row per video file.
VIDEOS = pa.schema([
    ("video", pa.string()),          # file stem, unique in the dataset
    ("path", pa.string()),           # path of the file as found under the dataset root
    ("part", pa.int32()),            # stable hash of `video` modulo the number of parts
    ("fingerprint", pa.string()),    # sha256 of the file's bytes
    ("container", pa.string()),
    ("codec", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("fps_avg", pa.float64()),       # frames / duration as ffprobe's avg_frame_rate
    ("fps_nominal", pa.float64()),   # ffprobe's r_frame_rate
    ("n_frames", pa.int32()),        # counted by decoding packets, never duration * fps
    ("duration", pa.float64()),
    ("has_audio", pa.bool_()),
    ("audio_rate", pa.int32()),      # 0 without audio
    ("vfr", pa.bool_()),             # variable frame rate
])

# index stage: data/interim/index/tracks.parquet, one row per track (person in a video).
TRACKS = pa.schema([
    ("track", pa.string()),          # video stem, or <stem>_left / <stem>_right
    ("video", pa.string()),
    ("person", pa.string()),         # main | left | right
    ("part", pa.int32()),
    ("n_frames", pa.int32()),        # decoded frames of the video
    ("va_set", pa.string()),         # Train_Set | Validation_Set | "" (no annotation for the task)
    ("expr_set", pa.string()),
    ("au_set", pa.string()),
    ("va_rows", pa.int32()),         # annotation rows in the file (0 without one)
    ("expr_rows", pa.int32()),
    ("au_rows", pa.int32()),
    ("va_labelled", pa.int32()),     # labelled frames after reconciling rows with n_frames
    ("expr_labelled", pa.int32()),
    ("au_labelled", pa.int32()),
])

# split stage: data/interim/split/part-<p>/frames.arrow, one row per decoded video frame.
FRAMES = pa.schema([
    ("video", pa.string()),
    ("frame", pa.int32()),           # 0-based decode order; annotation line frame+1
    ("pts", pa.float64()),           # presentation time in seconds, 0 = first frame
])

# split stage: data/interim/split/part-<p>/audio.arrow, one row per video; WAVs beside it.
AUDIO = pa.schema([
    ("video", pa.string()),
    ("has_audio", pa.bool_()),
    ("wav", pa.string()),            # file name inside the part folder's audio/, "" without audio
    ("sample_rate", pa.int32()),
    ("n_samples", pa.int64()),       # sample 0 is at time 0 (late audio padded, early audio cut)
])

# align stage: data/interim/faces/part-<p>/shard-*.arrow, one row per (track, frame).
FACES = pa.schema([
    ("track", pa.string()),
    ("video", pa.string()),
    ("frame", pa.int32()),
    ("pts", pa.float64()),
    ("found", pa.bool_()),
    ("reason", pa.string()),         # "" when found, else why not: no_face | lost | other_side ...
    ("score", pa.float32()),         # detector score, 0 when not found
    ("box", pa.list_(pa.float32(), 4)),        # x1, y1, x2, y2 in frame pixels
    ("kps", pa.list_(pa.float32(), 10)),       # 5 keypoints (x, y) in frame pixels
    ("crop", pa.binary()),           # aligned RGB face (align.crop_size square, 112 for TSAV) as JPEG, b"" when not found
])

# landmarks stage: data/interim/landmarks/part-<p>/shard-*.arrow, row for row with faces.
LANDMARKS = pa.schema([
    ("track", pa.string()),
    ("frame", pa.int32()),
    ("landmarks", pa.list_(pa.float32(), 2 * N_LANDMARKS)),  # (x, y) in crop pixels; NaN when not found
])

# masks stage: data/interim/masks/part-<p>/shard-*.arrow, row for row with faces.
MASKS = pa.schema([
    ("track", pa.string()),
    ("frame", pa.int32()),
    ("mask", pa.binary()),           # 8-bit grey PNG of the crop's size, b"" when not found
])

# mel stage: data/interim/mel/part-<p>/mel.arrow, one row per video.
MEL = pa.schema([
    ("video", pa.string()),
    ("has_audio", pa.bool_()),
    ("hop_s", pa.float64()),         # seconds between columns; column c is centred at c * hop_s
    ("n_mels", pa.int32()),
    ("n_cols", pa.int32()),
    ("mel", pa.list_(pa.float32())),  # n_mels x n_cols in dB, row-major (mel-major); empty without audio
])

# labels stage: data/processed/labels.parquet, one row per (track, frame) of every track.
LABELS = pa.schema([
    ("track", pa.string()),
    ("frame", pa.int32()),
    ("valence", pa.float32()),       # NaN where unlabelled
    ("arousal", pa.float32()),
    ("expr", pa.int8()),             # 0..6, -1 where unlabelled
    ("au", pa.list_(pa.int8(), len(AUS))),  # 0/1, -1 where unlabelled
    ("va_set", pa.string()),
    ("expr_set", pa.string()),
    ("au_set", pa.string()),
])

# partition stage: data/processed/partition.parquet, one row per (track, frame, task) used.
PARTITION = pa.schema([
    ("track", pa.string()),
    ("frame", pa.int32()),
    ("task", pa.string()),           # va | expr | au
    ("side", pa.string()),           # train | val (labelled) | unlabelled (training side, no label)
])
