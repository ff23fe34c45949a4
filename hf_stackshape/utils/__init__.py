"""Layer 0, utilities: what every other layer needs and that knows nothing about reward shaping.

Atomic files and JSONL (:mod:`.io`), run manifests and fingerprints (:mod:`.runs`), the distributed layout
(:mod:`.distributed`, :mod:`.sharded_output`), memory (:mod:`.memory`), keyed random draws (:mod:`.sampling`),
dialogue prompts (:mod:`.dialogue`) and their token encoding (:mod:`.prompts`), KV-cache helpers
(:mod:`.kv_cache`), a model's decoder stack (:mod:`.modeling`), argument checks (:mod:`.checks`), figures (:mod:`.plotting`), optional dependencies
(:mod:`._extras`) and self-contained exports (:mod:`.portable`). Nothing here imports from a higher layer
(``lint-imports`` checks it).
"""
