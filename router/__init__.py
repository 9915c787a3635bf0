"""Deciding where a request goes: the embedding router (no HTTP here; never imports gateway/).

* `router.encoder.Encoder`: sentence embeddings (lazy load, worker thread, micro-batching, cache)
* `router.turns.latest_turn`: the latest genuine user text of an Anthropic / OpenAI body
* `router.preferences.Router`: route vectors, scoring, abstention, stickiness -> `Decision`

Importing this package loads no model and imports neither torch nor onnxruntime.
"""

import os

# OpenBLAS helper threads spin for about 2^28 cycles after each call by default, taking a core from
# the event loop between decisions: through the routing API that spin tripled the p99 of a decision
# (15-19 ms against 5-6 ms with 2^4). Read once, when numpy loads OpenBLAS, so it is set here, before
# anything imports numpy; gateway/__init__.py imports this package first. A user's own value wins.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
