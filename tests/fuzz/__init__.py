"""The fuzzer: random and mutated-valid frames through every wire parser and every
data-plane entry point, on every shipped config and on generated policies; and
mutated-valid messages through the sans-IO protocol cores (``cores.py``: the
WireGuard device, ``wireguard_core.py``; the NAPT table, ``napt_core.py``).

``python -m tests.fuzz`` (``make fuzz``) runs a long campaign; ``test_fuzz.py`` is the
short slice CI runs. Modules, in the order an input meets them: ``policies`` (what
it runs on), ``frames`` (valid seeds per entry point), ``mutate``, ``parsers`` and
``oracle`` (what may come out), ``engine`` (one chunk, judged four ways),
``campaign`` (chunks over worker processes).
"""
