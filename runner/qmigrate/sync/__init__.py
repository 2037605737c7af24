"""`qmigrate sync`: make the target equal the source, writing only what changed.

`run` (one pass: phases, deletes, watermark, summary), `step` (the partition loop's compare
step), `id_set` (the source's IDs spilled to disk, merged in Qdrant's order), `deletes`
(the delete scope and the merge against the target), `watermark` (`sync.changed_field`),
`report` (text and markdown).
"""

from qmigrate.sync.run import SyncSummary, sync

__all__ = ["SyncSummary", "sync"]
