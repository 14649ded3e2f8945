"""Engine machinery: compiler, plan, runner and executors (private; see taskflow.engines)."""
