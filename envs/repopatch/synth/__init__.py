"""SWE-smith-style task synthesis: AST mutations of real PyPI libraries, validated by their tests.

``libraries`` (which sdists, where their code and tests are), ``mutate`` (the
mutators), ``build`` (download, validate in parallel sandboxes, cache a manifest).
"""
