"""Pipeline stages: one module per stage, each with a config dataclass and a run()."""
