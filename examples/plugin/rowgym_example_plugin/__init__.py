"""An example rowgym plugin: one environment and its expert, registered through an entry point."""

import rowgym


def register() -> None:
    """Called by rowgym (entry point group ``rowgym.envs``) to register this package's environments."""
    rowgym.register("rowgym-example/GuessNumber-v0", entry_point="rowgym_example_plugin.env:GuessNumberEnv",
                    expert="rowgym_example_plugin.expert:BisectExpert",
                    description="Guess a secret number with higher/lower hints (plugin example).")
