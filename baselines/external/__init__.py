"""Running published systems in their own environments: configuration, subprocesses, output checks, MIDI rendering."""
