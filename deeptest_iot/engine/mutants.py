"""Building test inputs: each case's seeded chain applied to its seed frame, batched.

Two things keep this cheap (docs/benchmarks.md, "Campaign speed"):

* link batching (``transforms.many.render``): at each link position the cases whose link is the same
  transform run as one call with per-image parameters and seeds;
* prefixes (``PrefixCache``): DeepTest's and DeepHunter's searches extend the chains of earlier cases
  that raised coverage; the images of earlier chains are kept (bounded in bytes, least recently used
  first out), so a case whose chain extends one of them starts from its image, not from the seed.

Both give, byte for byte, what each case's chain gives on its seed alone (tests/test_batched.py).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

#: 2 threads per core: measured faster than 1 (OpenCV and NumPy release the GIL between hand-offs).
POOL_SIZE = max(1, min(8, 2 * (os.cpu_count() or 1)))
_POOLS: dict[tuple[int, str], Any] = {}
#: Bytes of rendered chain images kept for reuse as prefixes (with a copy of each seed they came from).
PREFIX_CACHE_BYTES = 48 << 20


def pool(workers: int, purpose: str = "transforms"):
    """A long-lived thread pool per (size, purpose): prefetching uses its own, so it never waits on itself."""
    from concurrent.futures import ThreadPoolExecutor

    key = (workers, purpose)
    if key not in _POOLS:
        _POOLS[key] = ThreadPoolExecutor(workers, thread_name_prefix=f"deeptest-{purpose}")
    return _POOLS[key]


class PrefixCache:
    """Images of chains rendered from one seed array, for cases whose chain extends one of them.

    Keyed by (seed index, links, link seeds); least recently used first out once the images (and a
    copy of each seed they came from) pass ``max_bytes``. Tied to one seed array object (weakly): a
    call with another array empties it. A seed image changed in place since an entry was made is
    noticed (its copy differs) and its entries are dropped. Thread-safe.
    """

    def __init__(self, max_bytes: int = PREFIX_CACHE_BYTES):
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._owner = None
        self._entries: OrderedDict = OrderedDict()
        self._guards: dict[int, list] = {}  # seed index -> [copy of the seed image, number of entries]
        self.bytes = 0
        self.hits = self.misses = self.stored = 0

    def _bind(self, seed_images: np.ndarray) -> None:
        owner = self._owner() if self._owner is not None else None
        if owner is not seed_images:
            self.clear()
            self._owner = weakref.ref(seed_images)

    def clear(self) -> None:
        self._entries.clear()
        self._guards.clear()
        self.bytes = 0

    def _drop_seed(self, s: int) -> None:
        for key in [k for k in self._entries if k[0] == s]:
            self.bytes -= self._entries.pop(key).nbytes
        guard = self._guards.pop(s, None)
        if guard is not None:
            self.bytes -= guard[0].nbytes

    def starts(self, seed_images: np.ndarray, seed_index: Sequence[int], links: Sequence) -> list:
        """Per case, ``(k, image)`` for the longest proper prefix of its chain kept here, or None.
        ``links[i]`` is (transforms, seeds) of case i."""
        out = []
        with self._lock:
            self._bind(seed_images)
            checked: dict[int, bool] = {}
            for s, (ts, ss) in zip(seed_index, links):
                found = None
                if len(ts) > 1 and s in self._guards:
                    if s not in checked:
                        checked[s] = np.array_equal(self._guards[s][0], seed_images[s])
                        if not checked[s]:
                            self._drop_seed(s)
                    if checked[s]:
                        for k in range(len(ts) - 1, 0, -1):
                            image = self._entries.get((s, ts[:k], ss[:k]))
                            if image is not None:
                                self._entries.move_to_end((s, ts[:k], ss[:k]))
                                found = (k, image)
                                break
                if len(ts) > 1:
                    self.hits += found is not None
                    self.misses += found is None
                out.append(found)
        return out

    def store(self, seed_images: np.ndarray, seed_index: Sequence[int], links: Sequence, images: np.ndarray) -> None:
        """Keep ``images[i]`` as what chain ``links[i]`` makes of seed ``seed_index[i]``."""
        if self.max_bytes <= 0:
            return
        with self._lock:
            self._bind(seed_images)
            for s, (ts, ss), image in zip(seed_index, links, images):
                key = (s, ts, ss)
                if not ts or key in self._entries or 2 * image.nbytes > self.max_bytes:
                    continue
                if s not in self._guards:
                    guard = np.array(seed_images[s])
                    guard.setflags(write=False)
                    self._guards[s] = [guard, 0]
                    self.bytes += guard.nbytes
                kept = np.array(image)
                kept.setflags(write=False)
                self._entries[key] = kept
                self._guards[s][1] += 1
                self.bytes += kept.nbytes
                self.stored += 1
                while self.bytes > self.max_bytes and self._entries:
                    (old_s, _, _), old = self._entries.popitem(last=False)
                    self.bytes -= old.nbytes
                    self._guards[old_s][1] -= 1
                    if not self._guards[old_s][1]:
                        self.bytes -= self._guards.pop(old_s)[0].nbytes


#: The cache build_images uses (one seed array at a time: a campaign's).
PREFIXES = PrefixCache()


def build_images(seed_images: np.ndarray, cases: Sequence, workers: int | None = None) -> np.ndarray:
    """The pixels of every case: ``case.chain`` applied to ``seed_images[case.seed_index]``.

    Built link by link (``transforms.many.render``): at each link position the cases whose link is the
    same transform run as one call with per-image parameters and seeds, so a batch of random chains
    costs a few calls per transform name, not a call per image. A case whose chain extends a chain
    rendered earlier from the same seed array starts from that image (``PREFIXES``). The calls of one
    link position are spread over a thread pool (the model is idle while a batch is built, so the
    cores it would use are free). A pure function of its arguments: byte for byte what each case's
    chain gives on its seed alone, whichever thread builds it (tests/test_batched.py).
    """
    from deeptest_iot.transforms.batch import as_batch
    from deeptest_iot.transforms.many import link_seeds, render

    seed_images, _ = as_batch(seed_images)
    workers = workers or POOL_SIZE
    mapper = pool(workers).map if workers > 1 and len(cases) > 1 else None
    index = [int(case.seed_index) for case in cases]
    chains = [case.chain for case in cases]
    links = [(c.transforms, link_seeds(c)) for c in chains]
    starts = PREFIXES.starts(seed_images, index, links)
    out = render(seed_images, index, chains, mapper=mapper, pieces=workers, starts=starts)
    PREFIXES.store(seed_images, index, links, out)
    return out
