"""The projector service: the log's partitions into the story read models."""
