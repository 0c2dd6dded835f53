"""Exchange bindings of the django:// transport, kept in the database (storage layer).

kombu's virtual channel keeps the bindings of its own process in memory. A broadcast
(fanout exchange) must reach the queues that other processes bound, and a reply goes to a
queue that only the asking process bound, so every binding is also written here, once per
process and binding, and read back where this process alone does not know the way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import transaction

from djtasks.models.transport import QueueBinding

if TYPE_CHECKING:
    # The mixin's other half: what it calls on kombu's channel it is mixed into.
    from kombu.transport.virtual import Channel as VirtualChannel
else:
    VirtualChannel = object

#: kombu's binding-table entry: (routing_key, pattern, queue).
Entry = tuple[str, Any, str]


class Bindings:
    """Read and write the ``QueueBinding`` rows of one database alias."""

    def __init__(self, alias: str) -> None:
        self.alias = alias

    def _rows(self) -> Any:
        return QueueBinding.objects.using(self.alias)

    def bind(self, exchange: str, routing_key: str, pattern: Any, queue: str) -> None:
        """Record that ``queue`` receives from ``exchange`` (a no-op when it already does)."""
        binding = QueueBinding(exchange=exchange, queue=queue, routing_key=routing_key or "",
                               pattern=pattern)
        self._rows().bulk_create([binding], ignore_conflicts=True)

    def unbind(self, exchange: str | None, routing_key: str, queue: str) -> None:
        """Remove one binding."""
        self._rows().filter(exchange=exchange, queue=queue, routing_key=routing_key or "").delete()

    def table(self, exchange: str) -> list[Entry]:
        """Return the binding table of ``exchange`` across every process, oldest first."""
        rows = self._rows().filter(exchange=exchange).order_by("id")
        return [(key, pattern, queue)
                for key, pattern, queue in rows.values_list("routing_key", "pattern", "queue")]

    def queues(self, exchange: str) -> list[str]:
        """Return each queue bound to ``exchange`` once, however many keys bind it."""
        names = self._rows().filter(exchange=exchange).values_list("queue", flat=True)
        return sorted(set(names))

    def forget_queue(self, queue: str) -> None:
        """Remove every binding of ``queue`` (it is being deleted)."""
        self._rows().filter(queue=queue).delete()


class DurableBindings(VirtualChannel):
    """Channel mixin: bindings in the database, and fanout exchanges on top of them.

    Writes go to both places (kombu's in-memory state, then the table). Routing looks at
    this process's own bindings first, so publishing to an exchange this process declared
    costs no query (the hot path of task publishing); only when they name no queue does it
    read the table. A fanout publish always reads the table: it must reach every process's
    queue. Mixed into the django:// ``Channel``, before kombu's virtual channel.
    """

    supports_fanout = True
    alias: str
    state: Any

    @property
    def bindings(self) -> Bindings:
        return Bindings(self.alias)

    # kombu calls these four (see kombu.transport.virtual.exchange.FanoutExchange).
    def _queue_bind(self, exchange: str, routing_key: str, pattern: Any, queue: str) -> None:
        self.bindings.bind(exchange, routing_key, pattern, queue)

    def get_table(self, exchange: str) -> list[Entry]:
        return self.bindings.table(exchange)

    def _put_fanout(self, exchange: str, message: dict, routing_key: str, **kwargs: Any) -> None:
        # One copy per bound queue, all or none.
        with transaction.atomic(using=self.alias):
            for queue in self.bindings.queues(exchange):
                self._put(queue, message, **kwargs)

    def _lookup(self, exchange: str, routing_key: str, default: Any = None) -> Any:
        if exchange:
            local = self.state.exchanges.get(exchange, {}).get("table")
            if local:
                found = self.typeof(exchange).lookup(local, exchange, routing_key, None)
                if found:
                    return list(found)
        return super()._lookup(exchange, routing_key, default)

    def queue_unbind(self, queue: str, exchange: str | None = None, routing_key: str = "",
                     arguments: Any = None, **kwargs: Any) -> None:
        # kombu's own version edits the table get_table returns, which here is a copy.
        self.state.binding_delete(queue, exchange, routing_key)
        local = self.state.exchanges.get(exchange, {}).get("table")
        if local is not None:
            local[:] = [entry for entry in local if (entry[0], entry[2]) != (routing_key, queue)]
        self.bindings.unbind(exchange, routing_key, queue)

    def queue_delete(self, queue: str, if_unused: bool = False, if_empty: bool = False,
                     **kwargs: Any) -> None:
        """Delete ``queue``: its messages and its bindings, including other processes' ones."""
        if if_empty and self._size(queue):
            return
        for exchange, routing_key, _args in list(self.state.queue_bindings(queue)):
            local = self.state.exchanges.get(exchange, {}).get("table")
            if local is not None:
                local[:] = [entry for entry in local if (entry[0], entry[2]) != (routing_key, queue)]
        self.state.queue_bindings_delete(queue)
        self.bindings.forget_queue(queue)
        self._purge(queue)
