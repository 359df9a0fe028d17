"""Training tasks: the shared `SequenceTask` + CLI (`base.py`, `cli.py`) and one subpackage per modality."""
