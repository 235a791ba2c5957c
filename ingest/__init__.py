"""Document events in, permission-tagged chunks out.

The event schema, the faust worker, chunking, the index writer and the publish CLI.
"""
