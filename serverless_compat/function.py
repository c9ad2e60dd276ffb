"""``QiskitFunction``: a program to upload, as Qiskit Serverless describes one."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, Dict, List, Optional, Union

if TYPE_CHECKING:
    from serverless_compat.client import BaseClient
    from serverless_compat.job import Job


@dataclass
class QiskitFunction:
    """A program: ``entrypoint`` inside ``working_dir``, with its env vars and dependencies.

    ``title="provider/name"`` is the same as ``title="name", provider="provider"``.
    """

    GENERIC: ClassVar[str] = "GENERIC"
    APPLICATION: ClassVar[str] = "APPLICATION"
    CIRCUIT: ClassVar[str] = "CIRCUIT"

    title: str
    provider: Optional[str] = None
    entrypoint: Optional[str] = None
    working_dir: Optional[str] = "./"
    env_vars: Optional[Dict[str, str]] = None
    dependencies: Optional[List[str]] = None
    description: Optional[str] = None
    version: Optional[str] = None
    tags: Optional[List[str]] = None
    raw_data: Optional[Dict[str, Any]] = None
    image: Optional[str] = None
    runner: str = "ray"
    arguments_schema: Optional[Union[dict, bool]] = None
    type: str = GENERIC

    def __post_init__(self) -> None:
        if isinstance(self.title, str) and "/" in self.title:
            parts = self.title.split("/")
            if len(parts) > 2:
                raise ValueError("Invalid title: it can only contain one slash.")
            prefix, title = parts
            if self.provider is not None and self.provider != prefix:
                raise ValueError(
                    f"Invalid provider: you provided two different providers [{self.provider}] and [{prefix}]."
                )
            self.provider, self.title = prefix, title

    @property
    def full_title(self) -> str:
        return f"{self.provider}/{self.title}" if self.provider else self.title

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "QiskitFunction":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def __str__(self) -> str:
        return f"QiskitFunction({self.full_title})"

    __repr__ = __str__


class QiskitPattern(QiskitFunction):
    """[Deprecated since Qiskit Serverless 0.10.0] Use QiskitFunction."""


class RunnableQiskitFunction(QiskitFunction):
    """A function known to a client: ``run(**arguments)`` starts a job of it."""

    def __init__(self, client: "BaseClient", **kwargs: Any):
        self._run_service = client
        super().__init__(**kwargs)

    def run(self, **kwargs: Any) -> "Job":
        """Run the function with ``kwargs`` as its arguments; returns the job at once."""
        if self._run_service is None:
            raise ValueError("No clients specified for a function.")
        config = kwargs.pop("config", None)
        return self._run_service.run(program=self, arguments=kwargs, config=config)

    def jobs(self, **kwargs: Any) -> List["Job"]:
        """This function's jobs, newest first."""
        return self._run_service.jobs(function=self, **kwargs)

    def get_jobs(self, **kwargs: Any) -> List["Job"]:
        return self.jobs(**kwargs)

    def validate_arguments(self, arguments: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Check ``arguments`` against the function's ``arguments_schema`` without running it.

        Returns ``{"valid": True}``; raises QiskitServerlessException listing every violation.
        """
        if self._run_service is None:
            raise ValueError("No client specified for this function.")
        return self._run_service.validate_arguments(title=self.title, arguments=arguments, provider=self.provider)
