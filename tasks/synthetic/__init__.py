"""Synthetic tasks of the Mamba paper: selective copying and induction heads (generators, data, task, evaluation)."""
from mambaseq.tasks.synthetic.datamodule import SyntheticDataModule
from mambaseq.tasks.synthetic.induction_heads import InductionHeads
from mambaseq.tasks.synthetic.selective_copying import SelectiveCopying
from mambaseq.tasks.synthetic.task import SyntheticTask

__all__ = ["InductionHeads", "SelectiveCopying", "SyntheticDataModule", "SyntheticTask"]
