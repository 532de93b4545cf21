"""The command-line apps of ``fastmix``, apart from the library they use.

- :mod:`.cli` — the ``fastmix`` command (``demo``, ``train``, ``kernels``, ``bench``);
- :mod:`.demo` — the picture of every mix and the table that checks label weights against pixels;
- :mod:`.train`, :mod:`.train_arms`, :mod:`.train_data`, :mod:`.train_report` — ``fastmix train``;
- :mod:`.bench` — ``fastmix bench``: fastmix beside its peers, launches, bytes and host time.

Nothing in the library (``fastmix/``, ``kernels/``) imports from here.
"""
