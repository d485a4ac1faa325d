import enum
import os
from collections.abc import Iterator, Mapping
from typing import Any, Optional, Sequence, Union

from . import callbacks as callbacks
from . import exceptions as exceptions

__version__: str

Attributes = dict[str, list[bytes]]

class SyncreplMode(enum.Enum):
    REFRESH_ONLY = "refreshOnly"
    REFRESH_AND_PERSIST = "refreshAndPersist"

class Change:
    """One change of the mirror; handed out again with the same `seq` until acknowledged."""

    @property
    def seq(self) -> int: ...
    @property
    def kind(self) -> str:
        """`add`, `modify`, `rename` or `delete`."""
    @property
    def dn(self) -> str: ...
    @property
    def old_dn(self) -> Optional[str]: ...
    @property
    def entry_uuid(self) -> str: ...
    @property
    def attributes(self) -> Attributes: ...
    @property
    def old_attributes(self) -> Attributes: ...
    @property
    def added(self) -> Attributes: ...
    @property
    def removed(self) -> Attributes: ...

class Syncrepl:
    callback: Any
    mode: SyncreplMode
    whoami: Optional[str]
    deleted: bool
    def __init__(
        self,
        data_path: Union[str, "os.PathLike[str]"],
        callback: Any,
        mode: SyncreplMode,
        ldap_url: Any = None,
        *,
        starttls: bool = ...,
        ca_file: Optional[str] = ...,
        client_cert: Optional[str] = ...,
        client_key: Optional[str] = ...,
        bind_dn: Optional[str] = ...,
        password: Optional[str] = ...,
        allow_cleartext_password: bool = ...,
        expect_identity: Optional[str] = ...,
        retry: Optional[str] = ...,
        fsync: Optional[str] = ...,
        reset: bool = ...,
        connect_timeout: Optional[int] = ...,
        request_timeout: Optional[int] = ...,
        **ignored: Any,
    ) -> None: ...
    def __enter__(self) -> "Syncrepl": ...
    def __exit__(self, *exc: Any) -> bool: ...
    def poll(self) -> bool: ...
    def run(self) -> None: ...
    def please_stop(self) -> None: ...
    def unbind(self) -> bool: ...

def watch(
    url: Union[str, Sequence[Any]],
    state: Optional[Union[str, "os.PathLike[str]"]] = None,
    *,
    refresh_only: bool = False,
    **options: Any,
) -> Iterator[Change]: ...

