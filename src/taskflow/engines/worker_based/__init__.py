"""The worker-based engine: tasks run on worker processes reached through a message broker.

``engines.load(flow, engine='worker-based', exchange='test', topics=['t1'], url=...)`` runs
a flow whose tasks execute on :class:`~taskflow.engines.worker_based.worker.Worker`
processes serving those topics (``python -m taskflow.engines.worker_based.worker``). The
wire protocol is upstream TaskFlow's (:mod:`taskflow.engines.worker_based.protocol`), so
upstream's engines and workers and ours work together; the machinery lives in the private
``taskflow._workers`` package. :class:`~taskflow.engines.worker_based.proxy.Proxy` speaks
that protocol by hand (consume a topic, publish its messages).
"""

from __future__ import annotations

__all__: list[str] = []
