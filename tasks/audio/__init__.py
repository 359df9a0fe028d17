"""Raw-waveform audio modeling: audio I/O, quantization, SC09-style clips and long recordings, the Lightning task
and `mambaseq generate-audio`. See docs/audio.md."""
