"""The stream processors (faust-streaming on Kafka) and the producer SDK for services.

Import-light on purpose: ``streams.emitter`` is embedded in services and must not
pull in faust. The worker lives in ``streams.app``.
"""

__all__: list[str] = []
