"""Every generation's program contract at once: how a program finds its arguments and returns its result.

Qiskit Serverless changed both four times; a program pinning any release from 0.16 on runs
unchanged because the runner offers all of them to every job (checked in the client at each tag):

============  ==============================================  ===================================
releases      ``get_arguments()`` reads                        ``save_result()`` writes
============  ==============================================  ===================================
<= 0.16       env ``ENV_JOB_ARGUMENTS``                         gateway ``POST .../result/``, or the
0.17 - 0.25   ``arguments.serverless`` in the working dir      stdout marker when no gateway token
0.26 - 0.31   ``{DATA_PATH}/arguments/{ENV_JOB_ID_GATEWAY}.json``
0.32          ``ARGUMENTS_PATH``
0.33 on       ``ARGUMENTS_PATH``                                the ``RESULTS_PATH`` file
============  ==============================================  ===================================

``update_status`` (0.22 on) always goes to the gateway (``flows.job_gateway``). All three result
routes end in the same place, the job's ``RESULTS_PATH`` file; the last result saved wins.
The arguments are the client's JSON text (Qiskit Serverless's encoder: qiskit_ibm_runtime's
RuntimeEncoder), with circuits re-encoded in the QPY format the environment's Qiskit reads.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from flows.job_gateway import write_result
from serverless_compat import serialization

ARGUMENTS_FILE = "arguments.serverless"  # 0.17 - 0.25, relative to the working directory
ARGUMENTS_DIR = "arguments"  # 0.26 - 0.31, under DATA_PATH
# Linux refuses to start a process with one environment string over 128 KiB (MAX_ARG_STRLEN).
ENV_ARGUMENTS_LIMIT = 120 * 1024
_MARKER = re.compile(r"^Saved Result:(?P<result>.*):End Saved Result$")


def encode_arguments(arguments: Optional[dict[str, Any]], qpy_version: Optional[int]) -> str:
    """The job's arguments as JSON text for a program whose Qiskit reads QPY up to ``qpy_version``."""
    text = json.dumps(arguments or {}, allow_nan=True)
    if qpy_version is None or '"__type__"' not in text:
        return text
    written = serialization.qpy_version_in(text)
    if written is None or written <= qpy_version:
        return text
    return serialization.with_qpy_version(text, qpy_version)


@contextlib.contextmanager
def arguments_offered(text: str, job_id: str, *, arguments_path: Path, work_dir: Path, data_dir: Path,
                      log: Callable[[str], None]) -> Iterator[dict[str, str]]:
    """Put the arguments where every generation looks; yields the environment variables to add.

    The copy under the user's data directory is removed when the block ends.
    """
    arguments_path.parent.mkdir(parents=True, exist_ok=True)
    arguments_path.write_text(text)
    (work_dir / ARGUMENTS_FILE).write_text(text)
    env = {}
    if len(text.encode()) <= ENV_ARGUMENTS_LIMIT:
        env["ENV_JOB_ARGUMENTS"] = text
    else:
        log(f"The arguments ({len(text.encode())} bytes) are too large for the ENV_JOB_ARGUMENTS variable "
            "(qiskit-serverless <= 0.16 reads them there); every later release gets them from a file.")
    in_data = data_dir / ARGUMENTS_DIR / f"{job_id}.json"
    try:
        in_data.parent.mkdir(exist_ok=True)
        in_data.write_text(text)
    except OSError as exc:
        in_data = None
        log(f"Could not write the arguments to DATA_PATH/{ARGUMENTS_DIR}/ (read there by "
            f"qiskit-serverless 0.26 - 0.31): {exc}")
    try:
        yield env
    finally:
        if in_data is not None:
            in_data.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                in_data.parent.rmdir()  # only when no other job of the user still has its file there


class ResultMarker:
    """Takes ``save_result``'s stdout marker out of the program's output and saves the result.

    Releases up to 0.32 print ``\\nSaved Result:<json>:End Saved Result\\n`` when they have no
    gateway token. ``feed`` returns the lines that belong in the job's logs: not the marker line,
    nor the blank lines its print adds around it.
    """

    def __init__(self, results_path: Path):
        self._results_path = results_path
        self._held_blank = False
        self._after_marker = False

    def feed(self, line: str) -> list[str]:
        after_marker, self._after_marker = self._after_marker, False
        if line == "":
            if after_marker:
                return []
            out = [""] if self._held_blank else []
            self._held_blank = True
            return out
        match = _MARKER.match(line)
        if match is not None and _is_json(match["result"]):
            write_result(self._results_path, match["result"])
            self._held_blank = False
            self._after_marker = True
            return []
        out = [""] if self._held_blank else []
        self._held_blank = False
        return [*out, line]

    def flush(self) -> list[str]:
        held, self._held_blank = self._held_blank, False
        return [""] if held else []


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
