"""``import qiskit_serverless`` inside a qsflow job resolves to qsflow's ``serverless_compat``."""

import sys

import serverless_compat

sys.modules[__name__] = serverless_compat
