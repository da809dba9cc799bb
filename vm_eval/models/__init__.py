"""What models receive (ClipInput) and what the harness expects back; the model registry lives in vm_eval.registries."""
