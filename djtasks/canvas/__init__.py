"""The canvas: signatures and the primitives built from them (client layer).

``chain``, ``group``, ``chord``, ``chunks``, ``xmap`` and ``xstarmap`` keep Celery's names,
meanings and wire forms; each is a Signature subclass in a module of its own.
"""

from djtasks.canvas.chain import chain
from djtasks.canvas.chord import chord
from djtasks.canvas.chunks import chunks, xmap, xstarmap
from djtasks.canvas.group import group
from djtasks.canvas.signature import Signature, maybe_signature, signature, signature_list

__all__ = [
    "Signature", "chain", "chord", "chunks", "group", "maybe_signature", "signature",
    "signature_list", "xmap", "xstarmap",
]
