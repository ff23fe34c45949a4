"""Layer 1, the math core: the Stackelberg threshold ``m*(x)`` and the reward transforms (:mod:`.shaping`), the
follower's best response on a finite set of samples (:mod:`.follower`), named presets (:mod:`.presets`) and the
method registry (:mod:`.methods`). Pure functions of tensors and settings: no models, no files."""
