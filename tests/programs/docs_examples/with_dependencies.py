# A program needing a package version qsflow does not bring: pendulum 3.0.0, listed in the function's dependencies.
from importlib.metadata import version

import pendulum

from qiskit_serverless import save_result

toronto = pendulum.datetime(2012, 1, 1, tz="America/Toronto")
vancouver = pendulum.datetime(2012, 1, 1, tz="America/Vancouver")
hours = vancouver.diff(toronto).in_hours()
print(f"hours between the two new years: {hours}")
save_result({"hours": hours, "pendulum": version("pendulum"), "module_file": pendulum.__file__})
