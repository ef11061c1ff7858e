"""The stream processors: the lineage core on Kafka, with faust-streaming.

Needs the ``worker`` extra (``pip install 'privacy-lineage[worker]'``). The worker is
:class:`lineage.worker.app.LineageWorker`; every private name of faust or aiokafka it
relies on lives in :mod:`lineage.worker.faust_internals`.
"""

__all__: list[str] = []
