"""Container launcher: run by the node agent as root, becomes the container's process.

    python launch.py SPEC.json

Joins the pod's network namespace, enters a private mount namespace, bind-mounts the
pod's hosts/resolv.conf and volumes onto their paths, drops to the container's user and
execs the command. Standard library only (it is started by file path).

A mount path that does not exist on the host is never created on the host: its nearest
existing ancestor is *shadowed* in the private mount namespace (a tmpfs holding bind
mounts of every entry of the original directory) and the missing directories are made on
that tmpfs. When the ancestor is `/`, the shadow becomes the container's root (chroot).
A directory the container's user cannot traverse on the way to its interpreter (here
/root, 0700, holds pyenv's Python) is shadowed the same way with o+x added.
"""

from __future__ import annotations

import ctypes
import json
import os
import stat
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {source} on {target}",
    )


class View:
    """Paths as the container sees them, possibly under a shadow root."""

    def __init__(self, staging: str):
        self.root = ""
        self.staging = staging
        self.ours: set[str] = set()
        self.count = 0

    def host(self, path: str) -> str:
        return self.root + path

    def _staging_dir(self) -> str:
        self.count += 1
        path = os.path.join(self.staging, f"shadow{self.count}")
        os.makedirs(path, exist_ok=True)
        return path

    def shadow(self, path: str, extra_mode: int = 0) -> None:
        """Replace directory `path` (container view) by a tmpfs with its entries bind-mounted."""
        real = self.host(path) or "/"
        st = os.stat(real)
        mode = (st.st_mode & 0o7777) | extra_mode
        tmp = self._staging_dir()
        mount("tmpfs", tmp, "tmpfs", 0, f"mode={mode:o},uid={st.st_uid},gid={st.st_gid}")
        for entry in os.scandir(real):
            target = os.path.join(tmp, entry.name)
            if os.path.realpath(entry.path) == os.path.realpath(self.staging) or entry.path == tmp:
                continue
            try:
                if entry.is_symlink():
                    os.symlink(os.readlink(entry.path), target)
                    continue
                if entry.is_dir(follow_symlinks=False):
                    os.mkdir(target)
                else:
                    with open(target, "w"):
                        pass
                mount(entry.path, target, None, MS_BIND | MS_REC)
            except OSError:
                continue
        if path == "/":
            self.root = tmp
        else:
            mount(tmp, real, None, MS_MOVE)
        self.ours.add(path)

    def ensure(self, path: str, directory: bool) -> None:
        """Make `path` exist in the view without creating anything on the host."""
        path = os.path.normpath(path)
        if os.path.lexists(self.host(path)):
            return
        parent = os.path.dirname(path)
        if not os.path.lexists(self.host(parent)):
            self.ensure(parent, True)
        if parent not in self.ours:
            self.shadow(parent)
        if directory:
            os.mkdir(self.host(path), 0o755)
            self.ours.add(path)
        else:
            with open(self.host(path), "w"):
                pass

    def traversable(self, path: str, uid: int, gids: set[int]) -> None:
        """Shadow (adding o+x) each ancestor of `path` the user cannot search."""
        parts = os.path.normpath(path).split("/")[1:-1]
        current = ""
        for part in parts:
            current += "/" + part
            try:
                st = os.stat(self.host(current))
            except OSError:
                return
            if not stat.S_ISDIR(st.st_mode):
                return
            if st.st_uid == uid:
                ok = bool(st.st_mode & 0o100)
            elif st.st_gid in gids:
                ok = bool(st.st_mode & 0o010)
            else:
                ok = bool(st.st_mode & 0o001)
            if not ok:
                self.shadow(current, 0o011)


def resolve(view: View, path: str, depth: int = 0) -> str:
    """`path` with the symlinks of its existing part resolved inside the view (/var/run -> /run)."""
    parts = [p for p in os.path.normpath(path).split("/") if p]
    current = "/"
    for i, part in enumerate(parts):
        candidate = os.path.join(current, part)
        real = view.host(candidate)
        if os.path.islink(real) and depth < 40:
            link = os.readlink(real)
            base = link if link.startswith("/") else os.path.join(current, link)
            return resolve(view, os.path.normpath(os.path.join(base, *parts[i + 1 :])), depth + 1)
        if not os.path.lexists(real):
            return os.path.normpath(os.path.join(current, *parts[i:]))
        current = candidate
    return current


def _held(path: str) -> str:
    """A path to `path` that stays valid whatever is mounted over its ancestors: the
    /proc/self/fd link of a descriptor held open (close-on-exec) until the exec."""
    fd = os.open(path, os.O_PATH)
    return f"/proc/self/fd/{fd}"


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    fd = os.open(spec["netns"], os.O_RDONLY)
    _check(_libc.setns(fd, CLONE_NEWNET), "setns")
    os.close(fd)
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare")
    if spec.get("hostname"):
        _sethostname(spec["hostname"])  # its own UTS namespace, as a pod has
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    # The staging directory and the volume sources live under the node's state directory,
    # which a volume mounted on one of its ancestors (an emptyDir on /tmp when the state is
    # under /tmp) would hide from the mounts after it: reach them through file descriptors
    # opened before any mount.
    os.makedirs(spec["staging"], exist_ok=True)
    view = View(_held(spec["staging"]))
    for source, target in (spec.get("etc") or {}).items():
        if os.path.exists(target) and not os.path.islink(target):
            mount(source, target, None, MS_BIND)
    mounts = sorted(spec.get("mounts", []), key=lambda m: m["target"].count("/"))
    sources = [_held(m["source"]) for m in mounts]
    image = sorted({os.path.normpath(p) for p in spec.get("image", [])}, key=len)
    image_held = [_held(p) for p in image]
    read_only = []
    targets = []
    for m, source in zip(mounts, sources, strict=True):
        target = resolve(view, m["target"])
        targets.append(target)
        is_dir = os.path.isdir(source)
        view.ensure(target, is_dir)
        mount(source, view.host(target), None, MS_BIND | MS_REC)
        if m.get("readOnly"):
            read_only.append(view.host(target))
    # The image's files are outside any volume in a real pod; here they are the checkout,
    # which a volume on an ancestor (an emptyDir on /tmp, for a checkout under /tmp) would
    # hide: bind it back over the volume.
    for path, held in zip(image, image_held, strict=True):
        covering = [t for t in targets if path.startswith(t.rstrip("/") + "/")]
        if covering:
            # the mount point is made inside the volume (it is the pod's own directory)
            point = view.host(path)
            os.makedirs(point, exist_ok=True)
            mount(held, point, None, MS_BIND | MS_REC)
    # After every mount, as runc does: a volume nested in a read-only one (the router's
    # admin token under its routes ConfigMap) needs its mount point made in the parent.
    for target in read_only:
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    uid, gid = spec.get("uid"), spec.get("gid")
    groups = [int(g) for g in spec.get("groups", [])]
    workdir = resolve(view, spec.get("workdir") or "/")
    view.ensure(workdir, True)
    if uid not in (None, 0):
        gids = {int(gid or 0), *groups}
        paths = [spec["argv"][0], workdir + "/x", *spec.get("traverse", [])]
        for path in [*paths, *(os.path.realpath(p) for p in paths)]:
            if path.startswith("/"):
                view.traversable(path, int(uid), gids)
    if view.root:
        os.chdir(view.root)
        os.chroot(".")
    os.chdir(workdir)
    if gid is not None or uid not in (None, 0):
        os.setgroups(groups)
        os.setgid(int(gid if gid is not None else uid or 0))
    if uid is not None:
        os.setuid(int(uid))
    env = spec["env"]
    try:
        os.execvpe(spec["argv"][0], spec["argv"], env)
    except OSError as exc:
        sys.stderr.write(f"exec {spec['argv'][0]}: {exc.strerror}\n")
        sys.stderr.flush()
        os._exit(127)


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # the agent reads this line from the container log
        sys.stderr.write(f"container setup failed: {exc}\n")
        sys.stderr.flush()
        os._exit(128)
