"""Ray Job entry points: what a cluster runs when a pipeline is submitted (`curate submit`, coming next)."""
