"""The `zoo` command and the run infrastructure behind it: the CLI (``zoo.cli``), where runs live and
what they record (``zoo.runs``), resumable training data and seeding (``zoo.training``), SLURM requeue
(``zoo.cluster``), W&B (``zoo.tracking``), run comparison (``zoo.compare``) and the tools (``zoo.tools``)."""
