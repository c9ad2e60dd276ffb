"""The program of an image function (uploaded as its ``main.py``; see deployments/images.py).

It runs inside the function's container, started by qsflow's runner with qsflow's interpreter, and:
1. re-executes itself with the image's own Python (``QSFLOW_IMAGE_PYTHON``, else ``python3`` or
   ``python`` on the image's PATH) so the image's packages are the ones imported; qsflow's paths go
   behind them when the Python versions match (the ``qiskit_serverless`` shim when the image has no
   qiskit-serverless of its own);
2. follows Qiskit Serverless's custom-image contract: ``Runner`` from ``/runner/runner.py`` (the
   ``runner`` module on the image's package path), ``Runner().run(get_arguments())``, its return value
   saved with ``save_result``. An exception ends the job ERROR, recorded by the runner as one error event.
This file must not import qsflow: it runs under whatever Python the image has.
"""

import os
import shutil
import sys

PACKAGE_PATH = os.environ.get("QSFLOW_IMAGE_PACKAGE_PATH", "/runner")
PACKAGE_NAME = os.environ.get("QSFLOW_IMAGE_PACKAGE_NAME", "runner")
_STAGE = "QSFLOW_IMAGE_STAGE"


def _version(info=sys.version_info):
    return f"{info[0]}.{info[1]}"


def _image_python():
    explicit = os.environ.get("QSFLOW_IMAGE_PYTHON")
    if explicit:
        return explicit
    for name in ("python3", "python"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _lend_qsflow_paths():
    """In qsflow's interpreter: note its import paths, then run this file with the image's Python."""
    python = _image_python()
    # Not realpath: qsflow's venv python may be a link to the very binary the image has (a system
    # Python), yet the image's own packages are seen only when it runs as itself.
    if python is None or os.path.abspath(python) == os.path.abspath(sys.executable):
        return  # the image has no Python of its own (or it is qsflow's): go on here
    qsflow_paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    qsflow_paths += [p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages"))]
    os.environ.update({_STAGE: "image", "QSFLOW_HOST_PYTHON": _version(),
                       "QSFLOW_HOST_PATHS": os.pathsep.join(dict.fromkeys(qsflow_paths))})
    os.environ.pop("PYTHONPATH", None)  # qsflow's shim must not come before the image's packages
    sys.stdout.flush()
    os.execv(python, [python, os.path.abspath(__file__)])


def _behind_image_packages():
    """In the image's Python: qsflow's paths after the image's own, when the versions match."""
    host_version = os.environ.get("QSFLOW_HOST_PYTHON")
    paths = [p for p in os.environ.get("QSFLOW_HOST_PATHS", "").split(os.pathsep) if p]
    if host_version == _version():
        sys.path.extend(p for p in paths if p not in sys.path)
        return
    import importlib.util

    if importlib.util.find_spec("qiskit_serverless") is None:
        raise SystemExit(
            f"This image's Python {_version()} ({sys.executable}) has no qiskit_serverless, and qsflow's "
            f"(Python {host_version}) cannot lend its own to another Python version. Install "
            "qiskit-serverless in the image, or give the image Python " + str(host_version) + "."
        )


def main():
    if os.environ.get(_STAGE) != "image":
        _lend_qsflow_paths()
    else:
        _behind_image_packages()
    runner_file = os.path.join(PACKAGE_PATH, PACKAGE_NAME + ".py")
    runner_package = os.path.join(PACKAGE_PATH, PACKAGE_NAME, "__init__.py")
    if not (os.path.isfile(runner_file) or os.path.isfile(runner_package)):
        raise SystemExit(
            f"The function's image has no {runner_file}: an image function's code is a module "
            f"'{PACKAGE_NAME}' in {PACKAGE_PATH} defining class Runner with run(self, arguments) "
            "(Qiskit Serverless's custom image layout), e.g. COPY runner.py /runner/ in its Dockerfile."
        )
    sys.path.append(PACKAGE_PATH)

    from qiskit_serverless import get_arguments, save_result

    arguments = get_arguments()
    runner_module = __import__(PACKAGE_NAME)
    result = runner_module.Runner().run(arguments)
    if result is not None:
        save_result(result)


if __name__ == "__main__":
    main()
