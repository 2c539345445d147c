"""The synthetic world: a seeded scene generator (``world``), its renderer (``render``) and writers of
the real dataset formats (``coco_writer``)."""
