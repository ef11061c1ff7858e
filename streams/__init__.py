"""The stream processors: the lineage core on Kafka, with faust-streaming.

Needs the ``worker`` extra (``pip install 'privacy-lineage[worker]'``). The worker is
:class:`streams.app.LineageWorker`; every private name of faust or aiokafka it
relies on lives in :mod:`streams.faust_internals`.

This package ships in the base distribution too, where it is inert: nothing of
:mod:`lineage` imports it (the command line loads it only for a Kafka command, and
says what to install when the extra is missing), and a service's own ``streams.py``
beside its code comes first on ``sys.path``. Importing it without the extra fails at
once with what to install, never halfway through a faust import.
"""

import sys
from importlib.util import find_spec

if "faust" not in sys.modules and find_spec("faust") is None:  # pragma: no cover - base install
    raise ImportError(
        "streams needs the stream processors' dependencies: pip install 'privacy-lineage[worker]'"
    )

__all__: list[str] = []
