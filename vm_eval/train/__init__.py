"""Training VidMusician from a manifest: frozen components, cached inputs, the `vm-eval train` command."""
