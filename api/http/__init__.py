"""The HTTP face of Strata (FastAPI): `strata serve`.

Routes parse, call one function of core and present, like the command line; errors are
mapped to problem+json in one place (problems.py) from the table the CLI shares.
"""
