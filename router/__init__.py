"""Deciding where a request goes: the embedding router (no HTTP here; never imports gateway/).

* `router.encoder.Encoder`: sentence embeddings (lazy load, worker thread, micro-batching, cache)
* `router.turns.latest_turn`: the latest genuine user text of an Anthropic / OpenAI body
* `router.preferences.Router`: route vectors, scoring, abstention, stickiness -> `Decision`

Importing this package loads no model and imports neither torch nor onnxruntime.
"""
