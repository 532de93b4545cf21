"""fastmix's device code: Triton kernels and their launchers, nothing else.

- :mod:`.blend`: the region blend (in place, out of place, gradient) — one launch per call.
- :mod:`.targets`: the soft targets — one launch per call.
- :mod:`.aot`: compile every kernel ahead of time for sm_80/sm_90 and report registers,
  local memory and access widths (``python -m fastmix.kernels``); needs no GPU.
- :mod:`.traffic`: count the bytes the kernels load and store, under the Triton interpreter.

No sampling and no policy lives here; :mod:`fastmix.ops` decides when these run.
"""
