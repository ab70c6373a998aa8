"""`make learn`: which trainer moves a policy most, at an equal budget of sampled episodes."""
