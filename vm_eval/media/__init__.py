"""Media I/O: audio load/resample/write, video probe/decode/encode, muxing. Every error names the file."""
from vm_eval.media.audio import RESAMPLER, Audio, AudioStats, audio_stats, load_audio, resample, write_wav
from vm_eval.media.errors import MediaError
from vm_eval.media.video import VideoInfo, cut_video, decode_frames, mux_audio, probe_video, write_video

__all__ = [
    "RESAMPLER", "Audio", "AudioStats", "MediaError", "VideoInfo", "audio_stats", "cut_video", "decode_frames",
    "load_audio", "mux_audio", "probe_video", "resample", "write_video", "write_wav",
]
