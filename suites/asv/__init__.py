"""asv benchmarks of stability (asv.conf.json points here); see docs/benchmarking.md.

Modules: ``bench_transitions`` (materializing W), ``bench_training`` (a training step, its
peak memory), ``bench_probes`` (the Jacobian decay probe), ``bench_numerics`` (``track_``
figures that must not drift). Shared helpers live in ``common`` (no benchmarks there).
"""
