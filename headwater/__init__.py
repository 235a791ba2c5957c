"""The composition root: the ``headwater`` command and the assembly of processes."""
