"""The composition root: ``build`` wires a replica out of complete parts, ``Replica`` starts and stops them.

``parts`` says what a part is (and ``Off``, one turned off), ``handlers`` the handler registry, ``builders`` builds
the inner parts (observability,
alerts, executor, scheduling engine, use cases), ``listeners`` what listens on a port, ``build`` puts them
together and ``replica`` runs them in one visible order.
"""

from schedule_grpc.app.build import build, install_builtin_tasks
from schedule_grpc.app.replica import Replica

__all__ = ["Replica", "build", "install_builtin_tasks"]
