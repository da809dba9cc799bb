"""VidMusician re-implementation (video-to-music on a frozen MusicGen backbone).

Modules (import them explicitly; this package import stays light):

- ``vidmusician.config``: frozen dataclasses for the whole model (backbone scale, semantic and rhythm
  branches, training, generation), presets ``paper`` and ``tiny``, dotted-key overrides for ablations.
- ``vidmusician.backbone``: builds audiocraft's MusicGen LM and 32 kHz EnCodec with random weights, loads
  upstream checkpoints from a local directory, freezing and device helpers.
- ``vidmusician.params``: per-component parameter counts on the meta device, LoRA-rank search.

Note: on a CPU-only machine audiocraft needs the project's compat import hook to be installed before it is
imported (the application does that at start-up); this package does not install it itself.
"""
