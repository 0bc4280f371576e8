"""The sandbox host's filesystem: a tiny POSIX-ish tree in memory.

It knows owners, modes and (when asked to enforce them) Unix permission rules, keeps
an event log of operations, and remembers every content each path has held, so tests
can prove a write was atomic. It knows nothing of SSH: sftp.py serves it.
"""

from __future__ import annotations

import errno
import os
import posixpath
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Cred:
    """Who is asking: the sandbox checks permissions against it when enforcing them."""

    uid: int
    gid: int


@dataclass(eq=False)
class Node:
    """A file or directory (an inode: handles keep pointing at it across renames)."""

    is_dir: bool
    mode: int  # permission bits only
    uid: int
    gid: int
    mtime: float
    content: bytes = field(default=b"", repr=False)  # may hold a secret: never in a repr
    path: str | None = None  # where it lives now; None once removed


class MemFS:
    """A tiny POSIX-ish filesystem in memory.

    It keeps an event log (operation and paths, never contents) and, per path, every
    content that path has held, in order: a writer that truncates and rewrites in place
    shows up as an empty or partial version; temp file + rename shows only whole files.
    """

    def __init__(self, enforce_permissions: bool = False) -> None:
        self.enforce_permissions = enforce_permissions
        self._lock = threading.RLock()
        self._nodes: dict[str, Node] = {"/": Node(True, 0o755, 0, 0, time.time(), path="/")}
        self.events: list[tuple[Any, ...]] = []
        self._versions: dict[str, list[bytes]] = {}

    # -- helpers ------------------------------------------------------------------------

    @staticmethod
    def norm(path: str, cwd: str = "/") -> str:
        if not path.startswith("/"):
            path = posixpath.join(cwd, path)
        path = posixpath.normpath(path)
        return "/" + path.lstrip("/")  # normpath keeps a leading "//"

    def _get(self, path: str) -> Node:
        node = self._nodes.get(path)
        if node is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        return node

    def _parent(self, path: str) -> Node:
        parent = self._nodes.get(posixpath.dirname(path))
        if parent is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        if not parent.is_dir:
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", path)
        return parent

    def _allowed(self, node: Node, cred: Cred | None, bit: int) -> bool:
        if not self.enforce_permissions or cred is None or cred.uid == 0:
            return True
        if node.uid == cred.uid:
            return bool((node.mode >> 6) & bit)
        if node.gid == cred.gid:
            return bool((node.mode >> 3) & bit)
        return bool(node.mode & bit)

    def _require(self, node: Node, cred: Cred | None, bit: int, path: str) -> None:
        if not self._allowed(node, cred, bit):
            raise PermissionError(errno.EACCES, "Permission denied", path)

    def _record_version(self, node: Node) -> None:
        if node.path is not None and not node.is_dir:
            self._versions.setdefault(node.path, []).append(node.content)

    # -- queries ------------------------------------------------------------------------

    def exists(self, path: str) -> bool:
        with self._lock:
            return self.norm(path) in self._nodes

    def stat(self, path: str) -> Node:
        """The node at `path` (a live object: read it, don't keep it)."""
        with self._lock:
            return self._get(self.norm(path))

    def read(self, path: str, cred: Cred | None = None) -> bytes:
        with self._lock:
            path = self.norm(path)
            node = self._get(path)
            if node.is_dir:
                raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
            self._require(node, cred, 4, path)
            return node.content

    def listdir(self, path: str, cred: Cred | None = None) -> list[tuple[str, Node]]:
        with self._lock:
            path = self.norm(path)
            node = self._get(path)
            if not node.is_dir:
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", path)
            self._require(node, cred, 4, path)
            prefix = path.rstrip("/") + "/"
            return sorted(
                (p[len(prefix) :], n) for p, n in self._nodes.items() if p != path and p.startswith(prefix) and "/" not in p[len(prefix) :]
            )

    def versions(self, path: str) -> list[bytes]:
        """Every content `path` has held, in order (in memory only: may hold secrets)."""
        with self._lock:
            return list(self._versions.get(self.norm(path), []))

    def paths(self) -> list[str]:
        with self._lock:
            return sorted(self._nodes)

    # -- changes ------------------------------------------------------------------------

    def mkdir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0, cred: Cred | None = None) -> Node:
        with self._lock:
            path = self.norm(path)
            if path in self._nodes:
                raise FileExistsError(errno.EEXIST, "File exists", path)
            parent = self._parent(path)
            self._require(parent, cred, 2, path)
            if cred is not None:
                uid, gid = cred.uid, cred.gid
            node = Node(True, mode & 0o7777, uid, gid, time.time(), path=path)
            self._nodes[path] = node
            self.events.append(("mkdir", path))
            return node

    def makedirs(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        with self._lock:
            path = self.norm(path)
            missing = []
            while path not in self._nodes:
                missing.append(path)
                path = posixpath.dirname(path)
            for p in reversed(missing):
                self.mkdir(p, mode, uid, gid)

    def put(self, path: str, content: bytes, mode: int = 0o600, uid: int = 0, gid: int = 0) -> Node:
        """Create or replace a file directly (seeding; no permission checks)."""
        with self._lock:
            path = self.norm(path)
            self.makedirs(posixpath.dirname(path))
            node = self._nodes.get(path)
            if node is None or node.is_dir:
                node = Node(False, mode & 0o7777, uid, gid, time.time(), path=path)
                self._nodes[path] = node
            node.mode, node.uid, node.gid = mode & 0o7777, uid, gid
            node.content, node.mtime = bytes(content), time.time()
            self.events.append(("put", path))
            self._record_version(node)
            return node

    def open(self, path: str, flags: int, mode: int | None, cred: Cred | None) -> Node:
        """Open (and maybe create/truncate) a file with os.O_* flags; return its node."""
        with self._lock:
            path = self.norm(path)
            node = self._nodes.get(path)
            writing = bool(flags & (os.O_WRONLY | os.O_RDWR))
            if node is None:
                node = self._create(path, flags, mode, cred)
            else:
                self._check_open(node, path, flags, cred)
            self.events.append(("open", path, "w" if writing else "r"))
            if writing and flags & os.O_TRUNC and node.content:
                node.content, node.mtime = b"", time.time()
                self.events.append(("truncate", path))
                self._record_version(node)
            return node

    def _create(self, path: str, flags: int, mode: int | None, cred: Cred | None) -> Node:
        if not flags & os.O_CREAT:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        self._require(self._parent(path), cred, 2, path)
        uid, gid = (cred.uid, cred.gid) if cred is not None else (0, 0)
        # Like open(2) with the OpenSSH server's default umask 022.
        perm = (mode if mode is not None else 0o666) & ~0o022 & 0o7777
        node = Node(False, perm, uid, gid, time.time(), path=path)
        self._nodes[path] = node
        self.events.append(("create", path))
        self._record_version(node)
        return node

    def _check_open(self, node: Node, path: str, flags: int, cred: Cred | None) -> None:
        if flags & os.O_CREAT and flags & os.O_EXCL:
            raise FileExistsError(errno.EEXIST, "File exists", path)
        if node.is_dir:
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        if flags & os.O_ACCMODE in (os.O_RDONLY, os.O_RDWR):
            self._require(node, cred, 4, path)
        if flags & (os.O_WRONLY | os.O_RDWR):
            self._require(node, cred, 2, path)

    def write_at(self, node: Node, offset: int, data: bytes) -> None:
        with self._lock:
            content = node.content
            if offset > len(content):
                content += b"\0" * (offset - len(content))
            node.content = content[:offset] + bytes(data) + content[offset + len(data) :]
            node.mtime = time.time()
            self.events.append(("write", node.path, len(data)))
            self._record_version(node)

    def setattr(
        self,
        path: str,
        node: Node | None = None,
        *,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
        size: int | None = None,
        mtime: float | None = None,
        cred: Cred | None = None,
    ) -> None:
        """chmod/chown/truncate/utime with the usual rules: only root gives files away."""
        with self._lock:
            if node is None:
                path = self.norm(path)
                node = self._get(path)
            # Unprivileged means: permissions enforced and a non-root cred (never None).
            asker = None if not self.enforce_permissions or cred is None or cred.uid == 0 else cred
            if uid is not None or gid is not None:
                self._chown(node, path, uid, gid, asker)
            if mode is not None:
                self._chmod(node, path, mode, asker)
            if size is not None and not node.is_dir:
                self._require(node, cred, 2, path)
                node.content = node.content[:size] + b"\0" * max(0, size - len(node.content))
                self.events.append(("truncate", node.path))
                self._record_version(node)
            if mtime is not None:
                node.mtime = mtime

    def _chown(self, node: Node, path: str, uid: int | None, gid: int | None, asker: Cred | None) -> None:
        new_uid = node.uid if uid is None else uid
        new_gid = node.gid if gid is None else gid
        if asker is not None and (node.uid != asker.uid or new_uid != node.uid or new_gid not in (node.gid, asker.gid)):
            raise PermissionError(errno.EPERM, "Operation not permitted", path)
        node.uid, node.gid = new_uid, new_gid
        self.events.append(("chown", node.path, new_uid, new_gid))

    def _chmod(self, node: Node, path: str, mode: int, asker: Cred | None) -> None:
        if asker is not None and node.uid != asker.uid:
            raise PermissionError(errno.EPERM, "Operation not permitted", path)
        node.mode = mode & 0o7777
        self.events.append(("chmod", node.path, node.mode))

    def remove(self, path: str, cred: Cred | None = None) -> None:
        with self._lock:
            path = self.norm(path)
            node = self._get(path)
            if node.is_dir:
                raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
            self._require(self._parent(path), cred, 2, path)
            del self._nodes[path]
            node.path = None
            self.events.append(("remove", path))

    def rmdir(self, path: str, cred: Cred | None = None) -> None:
        with self._lock:
            path = self.norm(path)
            node = self._get(path)
            if not node.is_dir:
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", path)
            if self.listdir(path):
                raise OSError(errno.ENOTEMPTY, "Directory not empty", path)
            self._require(self._parent(path), cred, 2, path)
            del self._nodes[path]
            node.path = None
            self.events.append(("rmdir", path))

    def rename(self, old: str, new: str, *, overwrite: bool, cred: Cred | None = None) -> None:
        """rename(2) when `overwrite` (posix-rename), else SFTP v3 rename: the target
        must not exist (what OpenSSH's server does)."""
        with self._lock:
            old, new = self.norm(old), self.norm(new)
            node = self._get(old)
            self._require(self._parent(old), cred, 2, old)
            self._require(self._parent(new), cred, 2, new)
            self._replace_target(node, new, overwrite)
            if node.is_dir:
                self._move_children(old, new)
            del self._nodes[old]
            node.path = new
            self._nodes[new] = node
            self.events.append(("posix_rename" if overwrite else "rename", old, new))
            self._record_version(node)

    def _replace_target(self, node: Node, new: str, overwrite: bool) -> None:
        """Check a rename may land on `new`; the node it replaces (if any) is unlinked."""
        target = self._nodes.get(new)
        if target is None or target is node:
            return
        if not overwrite:
            raise FileExistsError(errno.EEXIST, "File exists", new)
        if target.is_dir != node.is_dir:
            raise IsADirectoryError(errno.EISDIR, "Is a directory", new)
        target.path = None

    def _move_children(self, old: str, new: str) -> None:
        prefix = old.rstrip("/") + "/"
        for p in [p for p in self._nodes if p.startswith(prefix)]:
            child = self._nodes.pop(p)
            child.path = new + p[len(old) :]
            self._nodes[child.path] = child
