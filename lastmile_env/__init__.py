"""lastmile: a reinforcement-learning research environment for last-mile delivery dispatch and routing."""

from gymnasium.envs.registration import register

from lastmile_env.config import ConfigError, ScenarioConfig, load_scenario

__version__ = "0.1.0"

register(
    id="LastMile-Dispatch-v0",
    entry_point="lastmile_env.env:DispatchEnv",
    max_episode_steps=10_000,
)
register(
    id="LastMile-Routing-v0",
    entry_point="lastmile_env.routing_env:RoutingEnv",
    max_episode_steps=20_000,
)
register(
    id="LastMile-EpochDispatch-v0",
    entry_point="lastmile_env.epoch_env:EpochDispatchEnv",
)

__all__ = ["ConfigError", "ScenarioConfig", "__version__", "load_scenario"]
