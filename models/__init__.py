"""The models (LightGBM, logistic regression, BTYD, uplift, complaint operations): pure functions.

Importing this package makes OpenMP's idle threads sleep instead of spin
(`OMP_WAIT_POLICY=PASSIVE`, unless the environment already sets it), before LightGBM loads
OpenMP. With the default policy a LightGBM thread that waits at one of the many barriers of
every boosting round keeps a core busy: on a shared 2-core machine the other thread is then
descheduled and each round waits for it. Measured under a load average of 6 (2 threads, 100
rounds on 300k x 80 rows, `benchmarks/bench_train.py`'s machine): 74-89 s wall and 28-29 CPU
seconds by default, 6-9 s and 3.8-4.0 CPU seconds passive. The wait policy never changes a
result (the boosters are `deterministic`).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
