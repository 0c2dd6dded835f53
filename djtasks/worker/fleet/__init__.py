"""A fleet: prefork children that consume from the broker themselves (processes layer).

``supervisor`` (the parent's side), ``child`` (a child's solo worker and its pipe),
``slots`` (what each child runs, in shared memory), ``control`` (remote control merged
from the children), ``orphans`` (a message back from a dead sibling), ``clock`` (one
Lamport clock for all of them), ``rates`` (one rate-limit bucket per task for all of them).
"""
