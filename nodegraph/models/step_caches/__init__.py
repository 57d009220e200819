"""Step caches for transformers: skip part of a model call when it would barely change the result.

One method a file, all with the same face: a cache object made once per run, whose `applied(model, t)` context
wraps one model call (`t` the scheduler's timestep, 0..1000) and appends that call's decision to `decisions`
(True = the model ran in full, False = something was reused). `handle.CachedTransformer` puts a cache around
every call of a model; `handle.make_cache` builds one by name.

- first_block (models/first_block_cache.py): ParaAttention's First Block Cache, after TeaCache
- taylorseer.py: TaylorSeer, attention outputs forecast by a Taylor series between full steps
- mag_cache.py: MagCache, whole stack skipped while the accumulated magnitude-ratio error stays small
- faster_cache.py: FasterCache's attention part, outputs extrapolated from the last two between full calls
- pab.py: pyramid attention broadcast, attention outputs reused on a fixed schedule inside a timestep range
"""
