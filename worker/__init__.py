"""Workers: the runner (spec -> core.fit -> store), Celery tasks, the embedded executor."""
