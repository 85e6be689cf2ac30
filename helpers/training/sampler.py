"""Mini-batch samplers: class-balanced (the paper's "balanced data sampler") and uniform.

Both are infinite iterators of int64 index arrays ``(batch_size,)`` into the training set,
computed with numpy on the host (a few microseconds per batch), so the training loop can index
its cached log-mels on the device with them. Both have ``state_dict()`` / ``load_state_dict()``:
a run restored from a checkpoint draws exactly the batches the uninterrupted run would have.
The state is JSON-able (plain ints, lists and numpy ``bit_generator.state`` dicts).
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np


def _check_batch_size(batch_size: int) -> int:
    if int(batch_size) < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1.")
    return int(batch_size)


class _BatchStream:
    """An infinite iterator of index batches: subclasses implement ``next_batch()``."""

    def next_batch(self) -> np.ndarray:  # pragma: no cover - always overridden
        raise NotImplementedError

    def __iter__(self) -> Iterator[np.ndarray]:
        return self

    def __next__(self) -> np.ndarray:
        return self.next_batch()


class BalancedBatchSampler(_BatchStream):
    """Class-balanced batches, as in the authors' code (docs/reference.md §4).

    Slots of the stream of batches are given to the classes in turn, ``0, 1, ..., K-1, 0, 1,
    ...``; the class cursor carries over from one batch to the next (with K = 5 and batch 32,
    batch 1 starts at class 0, batch 2 at class 2, ...). Each slot takes the next index from
    its class's shuffled list; when a list is used up it is reshuffled and restarted, so every
    example of a class is seen once before any is repeated. Over ``K`` consecutive slots each
    class appears exactly once; rare classes are therefore repeated many times per pass over
    the common ones.

    Each class has its own numpy random stream, spawned from ``seed``, so the order in which the
    classes are served within a batch cannot change the lists (the batch is filled class by
    class, vectorised, yet equals a slot-by-slot reading of the rule above).

    Args:
        labels: ``(n_examples,)`` int class indices; values < 0 (unknown, e.g. the hidden test
            labels) are never sampled.
        batch_size: indices per batch (the loop asks for ``2 * 32`` when MixUp is on).
        seed: seed of all shuffles.
        n_classes: number of classes K; defaults to ``labels.max() + 1``. Every class in
            ``0..K-1`` must have at least one example.
        shuffle_slots: permute each batch (the same classes, in random slots). Slots otherwise
            cycle through the classes, so MixUp's consecutive pairs (0-1, 2-3, ...) always join two
            different classes, and with K = 2 always one of each: every mixed target is then
            ``(lam, 1 - lam)`` and carries no information (``TrainConfig.mixup_pairs="shuffled"``).
            The permutation depends only on ``seed`` and the batch number, so resuming is exact.
    """

    def __init__(
        self, labels: np.ndarray, batch_size: int, seed: int, n_classes: int | None = None, shuffle_slots: bool = False
    ) -> None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"labels must be a 1-D integer array of class indices, got dtype {labels.dtype} and shape "
                f"{labels.shape}."
            )
        known = labels[labels >= 0]
        if known.size == 0:
            raise ValueError(
                "BalancedBatchSampler: no example has a known label (all labels < 0); pass the training labels."
            )
        self.n_classes = int(known.max()) + 1 if n_classes is None else int(n_classes)
        if known.max() >= self.n_classes:
            raise ValueError(
                f"label {int(known.max())} is out of range for n_classes={self.n_classes}; pass the right n_classes."
            )
        self.batch_size = _check_batch_size(batch_size)
        self.seed = int(seed)
        self.shuffle_slots = bool(shuffle_slots)
        self.n_examples = int(labels.shape[0])
        # Indices of each class in ascending order: the unshuffled reference lists.
        self._class_indices = [np.flatnonzero(labels == c).astype(np.int64) for c in range(self.n_classes)]
        for c, idx in enumerate(self._class_indices):
            if idx.size == 0:
                raise ValueError(
                    f"BalancedBatchSampler: class {c} has no example among the {known.size} labelled ones. "
                    f"Remove class {c} from the class list (and renumber), add examples of it, "
                    f"or use UniformBatchSampler."
                )
        self._rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(self.seed).spawn(self.n_classes)]
        self._orders = [rng.permutation(idx) for rng, idx in zip(self._rngs, self._class_indices)]
        self._pointers = [0] * self.n_classes
        self._cursor = 0  # class of the next slot
        self.batches_drawn = 0

    @property
    def class_sizes(self) -> list[int]:
        """Number of examples of each class, ``(K,)``."""
        return [int(idx.size) for idx in self._class_indices]

    def _take(self, c: int, m: int) -> np.ndarray:
        """Next ``m`` indices of class ``c``, reshuffling its list each time it is used up."""
        out = np.empty(m, dtype=np.int64)
        filled = 0
        while filled < m:
            order, p = self._orders[c], self._pointers[c]
            if p >= order.size:
                self._orders[c] = order = self._rngs[c].permutation(self._class_indices[c])
                p = 0
            k = min(m - filled, order.size - p)
            out[filled : filled + k] = order[p : p + k]
            self._pointers[c] = p + k
            filled += k
        return out

    def next_batch(self) -> np.ndarray:
        """The next batch: int64 indices ``(batch_size,)``."""
        slot_class = (self._cursor + np.arange(self.batch_size)) % self.n_classes
        batch = np.empty(self.batch_size, dtype=np.int64)
        for c in range(self.n_classes):
            slots = np.flatnonzero(slot_class == c)
            if slots.size:
                batch[slots] = self._take(c, slots.size)
        self._cursor = (self._cursor + self.batch_size) % self.n_classes
        if self.shuffle_slots:
            batch = batch[np.random.default_rng([self.seed, self.batches_drawn]).permutation(self.batch_size)]
        self.batches_drawn += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the exact same stream of batches (JSON-able)."""
        return {
            "kind": "balanced",
            "n_examples": self.n_examples,
            "class_sizes": self.class_sizes,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "cursor": self._cursor,
            "batches_drawn": self.batches_drawn,
            "pointers": list(self._pointers),
            "orders": [o.tolist() for o in self._orders],
            "rng_states": [rng.bit_generator.state for rng in self._rngs],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the sampler must be built on the same labels."""
        if state.get("kind") != "balanced":
            raise ValueError(
                f"sampler state of kind {state.get('kind')!r} cannot be loaded into a BalancedBatchSampler."
            )
        mine = {"n_examples": self.n_examples, "class_sizes": self.class_sizes, "batch_size": self.batch_size}
        for key, value in mine.items():
            if list(np.atleast_1d(state[key])) != list(np.atleast_1d(value)):
                raise ValueError(
                    f"sampler checkpoint has {key}={state[key]} but this sampler has {value}; "
                    "build the sampler on the same training labels and batch size as the interrupted run."
                )
        self.seed = int(state["seed"])
        self._cursor = int(state["cursor"])
        self.batches_drawn = int(state["batches_drawn"])
        self._pointers = [int(p) for p in state["pointers"]]
        self._orders = [np.asarray(o, dtype=np.int64) for o in state["orders"]]
        for rng, rng_state in zip(self._rngs, state["rng_states"]):
            rng.bit_generator.state = rng_state


class UniformBatchSampler(_BatchStream):
    """Uniform batches: shuffled epochs without replacement, concatenated into one stream.

    A batch may straddle two epochs (its end comes from the next permutation), so no example
    is dropped and every example appears exactly once per epoch ("no-bal" in Table 3).

    Args:
        n: number of training examples; indices are ``0..n-1``.
        batch_size: indices per batch.
        seed: seed of the permutations.
    """

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        if int(n) < 1:
            raise ValueError(f"UniformBatchSampler needs n >= 1 examples, got {n}.")
        self.n = int(n)
        self.batch_size = _check_batch_size(batch_size)
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)
        self._order = self._rng.permutation(self.n)
        self._pointer = 0
        self.epoch = 0
        self.batches_drawn = 0

    def next_batch(self) -> np.ndarray:
        """The next batch: int64 indices ``(batch_size,)``."""
        batch = np.empty(self.batch_size, dtype=np.int64)
        filled = 0
        while filled < self.batch_size:
            if self._pointer >= self.n:
                self._order = self._rng.permutation(self.n)
                self._pointer = 0
                self.epoch += 1
            k = min(self.batch_size - filled, self.n - self._pointer)
            batch[filled : filled + k] = self._order[self._pointer : self._pointer + k]
            self._pointer += k
            filled += k
        self.batches_drawn += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the exact same stream of batches (JSON-able)."""
        return {
            "kind": "uniform",
            "n": self.n,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "pointer": self._pointer,
            "epoch": self.epoch,
            "batches_drawn": self.batches_drawn,
            "order": self._order.tolist(),
            "rng_state": self._rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the sampler must have the same ``n`` and batch size."""
        if state.get("kind") != "uniform":
            raise ValueError(
                f"sampler state of kind {state.get('kind')!r} cannot be loaded into a UniformBatchSampler."
            )
        for key, value in (("n", self.n), ("batch_size", self.batch_size)):
            if int(state[key]) != value:
                raise ValueError(
                    f"sampler checkpoint has {key}={state[key]} but this sampler has {value}; "
                    "build the sampler like the interrupted run."
                )
        self.seed = int(state["seed"])
        self._pointer = int(state["pointer"])
        self.epoch = int(state["epoch"])
        self.batches_drawn = int(state["batches_drawn"])
        self._order = np.asarray(state["order"], dtype=np.int64)
        self._rng.bit_generator.state = state["rng_state"]
