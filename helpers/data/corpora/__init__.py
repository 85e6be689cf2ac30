"""The named corpora: the real demo corpus cut from public recordings (:mod:`.demo`), the synthetic one
(:mod:`.synthetic`), building or locating a corpus by name (:mod:`.named`), and the two-stage views of a
corpus (:mod:`.views`)."""
