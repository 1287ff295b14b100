"""The ``estafet`` command line: thin click code that parses, calls :mod:`estafet.relay`, prints.

Exit codes: 0 success, 1 a refused or failed operation (one line saying why), 2 usage error.
"""
