"""The live-view world of the tests (defined with the video benchmark)."""

from benchmarks.video.world import LIVE_ROLES, LiveWorld, live_token, seed

__all__ = ["LIVE_ROLES", "LiveWorld", "live_token", "seed"]
