"""``fastmix bench``: the side-by-side comparison with timm, torchvision, kornia and a hand loop.

- :mod:`fastmix.apps.bench.compare` — the cases, the tables, ``--json`` and ``--baseline`` (the command);
- :mod:`fastmix.apps.bench.collate` — FastCollateMixup beside timm's, on lists of uint8 samples;
- :mod:`fastmix.apps.bench.peers` — the peers' adapters (imported lazily: none of them is needed);
- :mod:`fastmix.apps.bench.traffic`, :mod:`fastmix.apps.bench.timing` — bytes moved, timing and progress.
"""
