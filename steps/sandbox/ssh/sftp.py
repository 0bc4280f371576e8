"""SFTP for the sandbox host: paramiko's server interface mapped onto a MemFS.

Every request is counted ("sftp:<op>") and runs as the logged-in user, so the
filesystem's permission rules apply; OSErrors become the SFTP status codes OpenSSH's
server would send.
"""

from __future__ import annotations

import os
import stat as stat_mod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import paramiko
from paramiko.sftp import SFTP_FAILURE, SFTP_NO_SUCH_FILE, SFTP_OK, SFTP_OP_UNSUPPORTED, SFTP_PERMISSION_DENIED

from steps.sandbox.ssh.fs import Cred, MemFS, Node

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

T = TypeVar("T")


def attributes(node: Node, filename: str | None = None) -> paramiko.SFTPAttributes:
    attr = paramiko.SFTPAttributes()
    attr.st_mode = (stat_mod.S_IFDIR if node.is_dir else stat_mod.S_IFREG) | node.mode
    attr.st_size = 0 if node.is_dir else len(node.content)
    attr.st_uid, attr.st_gid = node.uid, node.gid
    attr.st_atime = attr.st_mtime = int(node.mtime)
    if filename is not None:
        attr.filename = filename
    return attr


class SftpHandle(paramiko.SFTPHandle):
    """An open file: it holds the node, so it keeps working across a rename."""

    filename: str | None  # the path it was opened as (set by MemSftp.open)

    def __init__(self, sftp: MemSftp, node: Node, flags: int) -> None:
        super().__init__(flags)
        self.sftp, self.node = sftp, node
        self.readable = flags & os.O_ACCMODE in (os.O_RDONLY, os.O_RDWR)
        self.writable = flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)
        self.append = bool(flags & os.O_APPEND)

    def read(self, offset: int, length: int) -> bytes | int:
        self.sftp.count("sftp:read")  # per request, not per handle
        if not self.readable:
            return SFTP_PERMISSION_DENIED
        return self.node.content[offset : offset + length]

    def write(self, offset: int, data: ReadableBuffer) -> int:
        self.sftp.count("sftp:write")
        if not self.writable:
            return SFTP_PERMISSION_DENIED
        if self.append:
            offset = len(self.node.content)
        self.sftp.fs.write_at(self.node, offset, bytes(data))  # paramiko passes bytes: bytes(data) is data
        return SFTP_OK

    def stat(self) -> paramiko.SFTPAttributes:
        self.sftp.count("sftp:fstat")
        return attributes(self.node)

    def chattr(self, attr: paramiko.SFTPAttributes) -> int:
        return self.sftp._setattr(self.node.path or "", attr, node=self.node)


class _LoggedIn(Protocol):
    """What MemSftp reads of the connection paramiko hands it: a server.Connection (not
    imported here: server imports this module)."""

    @property
    def cred(self) -> Cred: ...


class MemSftp(paramiko.SFTPServerInterface):
    """SFTP requests mapped onto a MemFS, as the connection's logged-in user.

    paramiko builds one per SFTP session as MemSftp(connection, fs, home, count):
    `home` resolves relative paths, `count` records each request by name.
    """

    def __init__(
        self, server: paramiko.ServerInterface, fs: MemFS, home: str, count: Callable[[str], None], *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(server, *args, **kwargs)
        self.fs, self.home, self.count, self.cred = fs, home, count, cast(_LoggedIn, server).cred

    def _path(self, path: str) -> str:
        return self.fs.norm(path, self.home)

    def _do(self, op: str, fn: Callable[[], T]) -> T | int:
        """Count the request and run it: its result, or the SFTP status of its OSError."""
        self.count(f"sftp:{op}")
        try:
            return fn()
        except PermissionError:
            return SFTP_PERMISSION_DENIED
        except FileNotFoundError:
            return SFTP_NO_SUCH_FILE
        except OSError:
            return SFTP_FAILURE

    def open(self, path: str, flags: int, attr: paramiko.SFTPAttributes) -> SftpHandle | int:
        def do() -> SftpHandle:
            node = self.fs.open(self._path(path), flags, attr.st_mode, self.cred)
            handle = SftpHandle(self, node, flags)
            handle.filename = node.path
            return handle

        return self._do("open", do)

    def _done(self, op: str, fn: Callable[[], object]) -> int:
        """`_do` for a request whose answer is a status: SFTP_OK once `fn` returns."""

        def do() -> int:
            fn()
            return SFTP_OK

        return self._do(op, do)

    def list_folder(self, path: str) -> list[paramiko.SFTPAttributes] | int:
        return self._do("listdir", lambda: [attributes(n, name) for name, n in self.fs.listdir(self._path(path), self.cred)])

    def stat(self, path: str) -> paramiko.SFTPAttributes | int:
        return self._do("stat", lambda: attributes(self.fs.stat(self._path(path))))

    def lstat(self, path: str) -> paramiko.SFTPAttributes | int:
        # No symlinks in the sandbox: lstat is stat.
        return self._do("lstat", lambda: attributes(self.fs.stat(self._path(path))))

    def remove(self, path: str) -> int:
        return self._done("remove", lambda: self.fs.remove(self._path(path), self.cred))

    def rename(self, oldpath: str, newpath: str) -> int:
        return self._done("rename", lambda: self.fs.rename(self._path(oldpath), self._path(newpath), overwrite=False, cred=self.cred))

    def posix_rename(self, oldpath: str, newpath: str) -> int:
        return self._done("posix_rename", lambda: self.fs.rename(self._path(oldpath), self._path(newpath), overwrite=True, cred=self.cred))

    def mkdir(self, path: str, attr: paramiko.SFTPAttributes) -> int:
        mode = attr.st_mode if attr.st_mode is not None else 0o777
        return self._done("mkdir", lambda: self.fs.mkdir(self._path(path), mode & ~0o022, cred=self.cred))

    def rmdir(self, path: str) -> int:
        return self._done("rmdir", lambda: self.fs.rmdir(self._path(path), self.cred))

    def chattr(self, path: str, attr: paramiko.SFTPAttributes) -> int:
        return self._setattr(path, attr)

    def _setattr(self, path: str, attr: paramiko.SFTPAttributes, node: Node | None = None) -> int:
        def do() -> int:
            self.fs.setattr(
                self._path(path) if node is None else path,
                node,
                mode=attr.st_mode & 0o7777 if attr.st_mode is not None else None,
                uid=attr.st_uid,
                gid=attr.st_gid,
                size=attr.st_size,
                mtime=attr.st_mtime,
                cred=self.cred,
            )
            return SFTP_OK

        return self._do("setstat", do) if node is None else self._do("fsetstat", do)

    def canonicalize(self, path: str) -> str:
        return self._path(path)

    def readlink(self, path: str) -> int:
        return SFTP_OP_UNSUPPORTED

    def symlink(self, target_path: str, path: str) -> int:
        return SFTP_OP_UNSUPPORTED
