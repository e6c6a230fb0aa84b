"""KPIs: the sustained-threshold state machine and the engine that evaluates KPIs every tick."""
