"""The environments that ship with rowgym, as lazy specs (nothing heavy is imported here).

To add an environment family: write ``envs/<family>/``, add its ids below (or, for a
separate package, use the ``rowgym.envs`` entry point; see ``examples/plugin``).
"""

SPECS: list[dict] = [
    dict(id="rowgym/ToolAPI-Retail-v0", entry_point="rowgym.envs.toolapi.retail:RetailEnv",
         expert="rowgym.agents.experts:GoldPlanExpert", tags=("toolapi",),
         description="Retail customer service over a SQLite backend: orders, returns, exchanges, addresses."),
    dict(id="rowgym/ToolAPI-Airline-v0", entry_point="rowgym.envs.toolapi.airline:AirlineEnv",
         expert="rowgym.agents.experts:GoldPlanExpert", tags=("toolapi",),
         description="Airline reservations over a SQLite backend: search, book, cancel, change, baggage."),
    dict(id="rowgym/ToolAPI-Home-v0", entry_point="rowgym.envs.toolapi.home:HomeEnv",
         expert="rowgym.agents.experts:GoldPlanExpert", tags=("toolapi",),
         description="Smart home (lights, thermostats, locks): 1-2 calls + finish; short prompts for training demos."),
    dict(id="rowgym/Shop-v0", entry_point="rowgym.envs.shop.env:ShopEnv",
         expert="rowgym.envs.shop.expert:ShopExpert", tags=("browser",),
         description="WebShop-style store in real Chromium (Playwright): search, options, cart, checkout."),
    dict(id="rowgym/RepoPatch-Corpus-v0", entry_point="rowgym.envs.repopatch.families:CorpusEnv",
         expert="rowgym.agents.experts:GoldPlanExpert", tags=("repopatch", "docker"),
         description="Fix an injected bug in small built-in Python repos; hidden FAIL_TO_PASS/PASS_TO_PASS tests."),
    dict(id="rowgym/RepoPatch-Synth-v0", entry_point="rowgym.envs.repopatch.families:SynthEnv",
         expert="rowgym.agents.experts:GoldPlanExpert", tags=("repopatch", "docker"),
         description="SWE-smith-style validated AST mutations of real PyPI libraries (built and cached on first use)."),
    dict(id="rowgym/RepoPatch-SWEBench-v0", entry_point="rowgym.envs.repopatch.families:SWEBenchEnv",
         expert="rowgym.agents.experts:GoldPlanExpert", tags=("repopatch", "docker"),
         description="SWE-bench-format instances (instances_path=...) against local git repos; a tiny example by default."),
]

