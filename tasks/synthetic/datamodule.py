"""`SyntheticDataModule`: seeded, resumable synthetic training data (fresh examples every step) and a fixed
validation set at the training length."""
from __future__ import annotations

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from mambaseq.tasks.data import ResumableDataLoader
from mambaseq.tasks.synthetic.data import SyntheticGenerator, SyntheticSequences, validation_set
from mambaseq.tasks.synthetic.induction_heads import InductionHeads
from mambaseq.tasks.synthetic.selective_copying import SelectiveCopying

TASKS = ("induction_heads", "selective_copying")


def build_task(name: str, vocab_size: int, num_memorize: int) -> SyntheticGenerator:
    """The generator named `name` (one of `TASKS`)."""
    if name == "induction_heads":
        return InductionHeads(vocab_size=vocab_size)
    if name == "selective_copying":
        return SelectiveCopying(vocab_size=vocab_size, num_memorize=num_memorize)
    raise ValueError(f"SyntheticDataModule.task={name!r} is unknown: expected one of {TASKS}")


class SyntheticDataModule(pl.LightningDataModule):
    """Training set of `max_steps x batch_size` examples (read from the Trainer unless `num_train_examples` is set)
    in a fixed order, so every step sees new sequences and a resumed run continues with the same ones."""

    def __init__(
        self,
        task: str = "induction_heads",
        vocab_size: int = 16,
        num_memorize: int = 16,
        seq_len: int = 256,
        batch_size: int = 8,
        num_train_examples: int | None = None,
        val_examples: int = 256,
        val_batch_size: int | None = None,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.task = build_task(task, vocab_size, num_memorize)
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.num_train_examples = num_train_examples
        self.val_examples = val_examples
        self.val_batch_size = val_batch_size or batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.max_token_id = vocab_size - 1  # checked against the model's vocabulary by LanguageModelTask.setup
        self.save_hyperparameters()

    def _train_size(self) -> int:
        if self.num_train_examples is not None:
            return self.num_train_examples
        max_steps = self.trainer.max_steps if self.trainer is not None else -1
        if max_steps is None or max_steps < 1:
            raise ValueError("SyntheticDataModule: set trainer.max_steps (the training set is max_steps x batch_size"
                             " fresh examples) or data.init_args.num_train_examples")
        accumulate = self.trainer.accumulate_grad_batches
        return max_steps * accumulate * self.batch_size * self.trainer.world_size

    def train_dataloader(self) -> ResumableDataLoader:
        dataset = SyntheticSequences(self.task, self.seq_len, self._train_size(), self.seed)
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        return ResumableDataLoader(dataset, self.batch_size, shuffle=False, seed=self.seed, rank=rank,
                                   world_size=world_size, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        dataset = validation_set(self.task, self.seq_len, self.val_examples, self.seed)
        return DataLoader(dataset, batch_size=self.val_batch_size, shuffle=False, num_workers=self.num_workers)
