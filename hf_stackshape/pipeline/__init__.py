"""Layer 7, the pipeline: batched generation by method name (:mod:`.generation`) and the method x weight sweep
with its evaluation and Figure 2 (:mod:`.sweep`)."""
