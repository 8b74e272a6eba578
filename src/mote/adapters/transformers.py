"""Three private methods of transformers' ``Trainer``, behind public-named hooks (:class:`TrainerHooks`).

The TA-CL trainer (:class:`mote.train.mote_trainer.MoteTrainer`) needs to (1) tell its batch sampler the epoch
before each epoch's loader is iterated, also when a resumed run wraps the loader to skip batches (no callback runs
between building that loader and iterating it), and (2) write every checkpoint to a staging folder and rename it
into place (atomic checkpoints: ``TrainerCallback.on_save`` runs only after the checkpoint is written in place).
Neither has a public hook in transformers 5, so this mixin overrides ``_run_epoch``, ``_get_output_dir`` and
``_save_checkpoint`` and calls public-named methods instead; nothing else in mote touches them.
``tests/test_adapters.py`` checks their signatures against the pinned transformers.

Example:
    >>> class MyTrainer(TrainerHooks, SentenceTransformerTrainer):      # doctest: +SKIP
    ...     def epoch_starting(self, epoch): print("epoch", epoch)
"""

from __future__ import annotations

from typing import Any

# private method -> its parameter names after self (checked by the tests)
USED: dict[str, tuple[str, ...]] = {
    "_run_epoch": ("model", "epoch", "train_dataloader", "steps_in_epoch", "num_update_steps_per_epoch", "trial",
                   "ignore_keys_for_eval", "start_time", "resume_from_checkpoint", "epochs_trained",
                   "steps_trained_in_current_epoch"),
    "_get_output_dir": ("trial",),
    "_save_checkpoint": ("model", "trial"),
}


class TrainerHooks:
    """Mixin (before the ``Trainer`` class in the bases) with public hooks over the private methods above."""

    _hooks_output_dir: str | None = None

    def epoch_starting(self, epoch: int) -> None:
        """Called before each training epoch's batches are drawn (``epoch``: 0-based)."""

    def epoch_needed(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` runs at all; ``False`` skips it (the stock loop would take one step before
        checking ``max_steps``, e.g. in a run resumed from its final checkpoint)."""
        return True

    def run_output_dir(self, trial: Any = None) -> str:
        """The folder checkpoints are written to (``args.output_dir``, or the trial's folder)."""
        return super()._get_output_dir(trial)  # type: ignore[misc]

    def save_checkpoint(self, model: Any, trial: Any) -> None:
        """Save a checkpoint (the stock save); override to save it elsewhere with :meth:`write_checkpoint_to`."""
        super()._save_checkpoint(model, trial)  # type: ignore[misc]

    def write_checkpoint_to(self, folder: str, model: Any, trial: Any) -> None:
        """The stock checkpoint save (model, optimizer, scheduler, RNG, trainer state), into ``folder`` instead of
        :meth:`run_output_dir` (as ``folder/checkpoint-N``)."""
        self._hooks_output_dir = folder
        try:
            super()._save_checkpoint(model, trial)  # type: ignore[misc]
        finally:
            self._hooks_output_dir = None

    # ------------------------------------------------------------------------------------------- the overrides
    def _run_epoch(self, *args, **kwargs):
        epoch = kwargs.get("epoch", args[1] if len(args) > 1 else None)
        if epoch is not None:
            if not self.epoch_needed(int(epoch)):
                return None
            self.epoch_starting(int(epoch))
        return super()._run_epoch(*args, **kwargs)  # type: ignore[misc]

    def _get_output_dir(self, trial):
        return self._hooks_output_dir if self._hooks_output_dir is not None else self.run_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        self.save_checkpoint(model, trial)
