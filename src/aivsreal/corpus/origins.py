"""Read the files of an origin offline: GitHub snapshots (bare git dirs), Debian packages, PyPI files, folders.

Every reader lists the paths its include/exclude globs select (sorted, so builds are deterministic) and
returns each file's bytes exactly as stored (a git blob at the pinned commit, a file in a package).
Debian and PyPI downloads go through the ordinary clients (``apt-get download``, ``pip download``) into a
cache and are reused from there; nothing else touches the network.
"""

from __future__ import annotations

import csv
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from .catalog import DebianOrigin, GithubOrigin, LocalOrigin, PypiOrigin, Source

IMAGE_SUFFIXES = (
    ".jpg",
    ".jpeg",
    ".jfif",
    ".png",
    ".webp",
    ".bmp",
    ".tif",
    ".tiff",
    ".gif",
    ".heic",
    ".heif",
)


class OriginError(RuntimeError):
    """An origin cannot be read (snapshot missing, commit absent, download failed ...)."""


def glob_match(path: str, pattern: str) -> bool:
    """fnmatch on a repository path; ``**/`` also matches no folder at all (``a/**/b`` matches ``a/b``)."""
    if fnmatch.fnmatchcase(path, pattern):
        return True
    if "**/" in pattern:
        return fnmatch.fnmatchcase(path, pattern.replace("**/", ""))
    return False


def selected(path: str, include: list[str], exclude: list[str]) -> bool:
    """Whether a path is an image file chosen by the include globs and not dropped by the excludes."""
    if not path.lower().endswith(IMAGE_SUFFIXES):
        return False
    return any(glob_match(path, g) for g in include) and not any(glob_match(path, g) for g in exclude)


class Reader:
    """The files of one origin: ``paths()`` (selected, sorted), ``read(path)`` (bytes), ``meta(path)``."""

    missing: int = 0  # selected files the origin lists but cannot give (absent blobs of large files)

    def paths(self) -> list[str]:
        raise NotImplementedError

    def read(self, path: str) -> bytes:
        raise NotImplementedError

    def meta(self, path: str) -> dict[str, str]:
        return {}

    def locator(self, path: str) -> str:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- GitHub snapshots ----------------------------------------------------------------------------
def find_git_dir(mirrors: str | os.PathLike, repo: str) -> Path:
    """The bare git directory of ``owner/name`` under a mirrors folder (``owner+name/...``, any case)."""
    root = Path(mirrors).expanduser()
    want = repo.replace("/", "+").lower()
    cands = []
    if root.is_dir():
        cands = [d for d in sorted(root.iterdir()) if d.name.lower() == want and d.is_dir()]
    for d in cands:
        for g in (d / "repo" / ".git", d / "repo", d / ".git", d):
            if (g / "HEAD").is_file() and (g / "objects").is_dir():
                return g
    raise OriginError(f"no snapshot of github:{repo} under {root} (expected {want}/repo)")


class GithubReader(Reader):
    def __init__(self, origin: GithubOrigin, mirrors: str | os.PathLike):
        self.origin = origin
        self.git_dir = find_git_dir(mirrors, origin.repo)
        self._env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
        ok = subprocess.run(
            ["git", f"--git-dir={self.git_dir}", "cat-file", "-e", f"{origin.commit}^{{commit}}"],
            capture_output=True,
            env=self._env,
        )
        if ok.returncode:
            raise OriginError(
                f"github:{origin.repo}: commit {origin.commit} not in the snapshot {self.git_dir}"
            )
        self._blobs: dict[str, str] = {}
        self._proc: subprocess.Popen | None = None

    def _git(self, *args: str) -> bytes:
        r = subprocess.run(["git", f"--git-dir={self.git_dir}", *args], capture_output=True, env=self._env)
        if r.returncode:
            raise OriginError(
                f"github:{self.origin.repo}: git {' '.join(args)}: {r.stderr.decode(errors='replace')}"
            )
        return r.stdout

    def paths(self) -> list[str]:
        out = self._git("ls-tree", "-r", "-z", "--full-tree", self.origin.commit)
        chosen: dict[str, str] = {}
        for rec in out.split(b"\0"):
            if not rec:
                continue
            head, _, name = rec.partition(b"\t")
            mode, typ, sha = head.decode().split()
            path = name.decode("utf-8", errors="surrogateescape")
            if (
                typ == "blob"
                and mode != "120000"
                and selected(path, self.origin.include, self.origin.exclude)
            ):
                chosen[path] = sha
        # snapshots leave out large blobs: keep only the present ones, count the rest
        if chosen:
            shas = "\n".join(chosen.values()) + "\n"
            r = subprocess.run(
                ["git", f"--git-dir={self.git_dir}", "cat-file", "--batch-check"],
                input=shas.encode(),
                capture_output=True,
                env=self._env,
            )
            present = {ln.split()[0] for ln in r.stdout.decode().splitlines() if not ln.endswith("missing")}
            self.missing = sum(1 for s in chosen.values() if s not in present)
            chosen = {p: s for p, s in chosen.items() if s in present}
        self._blobs = chosen
        return sorted(chosen)

    def read(self, path: str) -> bytes:
        if not self._blobs:
            self.paths()
        sha = self._blobs[path]
        if self._proc is None:
            self._proc = subprocess.Popen(
                ["git", f"--git-dir={self.git_dir}", "cat-file", "--batch"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=self._env,
            )
        assert self._proc.stdin and self._proc.stdout
        self._proc.stdin.write(sha.encode() + b"\n")
        self._proc.stdin.flush()
        header = self._proc.stdout.readline().decode().split()
        if len(header) != 3:
            raise OriginError(f"github:{self.origin.repo}: {path}: blob {sha} unreadable")
        size = int(header[2])
        data = self._proc.stdout.read(size)
        self._proc.stdout.read(1)  # the newline after the object
        return data

    def locator(self, path: str) -> str:
        return f"github:{self.origin.repo}@{self.origin.commit}:{path}"

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.stdin:
                self._proc.stdin.close()
            self._proc.wait(timeout=30)
            self._proc = None


# ---- folders (local origins and unpacked packages) ------------------------------------------------
class TreeReader(Reader):
    def __init__(self, root: Path, include: list[str], exclude: list[str], prefix: str):
        self.root, self.include, self.exclude, self.prefix = root, include, exclude, prefix

    def paths(self) -> list[str]:
        out = []
        for dirpath, dirnames, files in os.walk(self.root, followlinks=False):
            dirnames.sort()
            for f in sorted(files):
                full = Path(dirpath) / f
                if full.is_symlink() or not full.is_file():
                    continue
                rel = full.relative_to(self.root).as_posix()
                if selected(rel, self.include, self.exclude):
                    out.append(rel)
        return sorted(out)

    def read(self, path: str) -> bytes:
        return (self.root / path).read_bytes()

    def locator(self, path: str) -> str:
        return f"{self.prefix}:{path}"


class LocalReader(TreeReader):
    def __init__(self, origin: LocalOrigin, base: Path):
        root = Path(os.path.expanduser(origin.path))
        if not root.is_absolute():
            root = (base / root).resolve()
        if not root.is_dir():
            raise OriginError(f"local:{origin.path}: no such folder ({root})")
        super().__init__(root, origin.include, origin.exclude, f"local:{origin.path}")
        self._meta: dict[str, dict[str, str]] = {}
        if origin.manifest:
            mf = root / origin.manifest
            try:
                with open(mf, newline="", encoding="utf-8-sig") as f:
                    for row in csv.DictReader(f):
                        self._meta[row["path"]] = {
                            k: row.get(k, "") for k in ("split", "group") if row.get(k)
                        }
            except (OSError, KeyError) as e:
                raise OriginError(f"{mf}: cannot read the manifest: {e}") from None

    def meta(self, path: str) -> dict[str, str]:
        return self._meta.get(path, {})


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode:
        raise OriginError(f"{what}: {' '.join(cmd)} failed: {(r.stderr or r.stdout).strip()[-400:]}")


def debian_root(origin: DebianOrigin, cache: Path) -> tuple[Path, Path]:
    """Download (once) and unpack a Debian package at its version: (unpacked folder, .deb file)."""
    safe = re.sub(r"[^A-Za-z0-9.+_-]", "_", f"{origin.package}_{origin.version}")
    dest = cache / "debian" / safe
    if (dest / ".done").is_file():
        return dest / "root", Path((dest / ".done").read_text().strip())
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise OriginError(f"{origin.describe()}: apt-get/dpkg-deb not available")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{safe}.", dir=dest.parent))
    try:
        _run(["apt-get", "download", "-q", f"{origin.package}={origin.version}"], tmp, origin.describe())
        debs = sorted(tmp.glob("*.deb"))
        if len(debs) != 1:
            raise OriginError(f"{origin.describe()}: expected one .deb, got {[d.name for d in debs]}")
        _run(["dpkg-deb", "-x", debs[0].name, "root"], tmp, origin.describe())
        (tmp / ".done").write_text(str(dest / debs[0].name) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest / "root", dest / debs[0].name


class DebianReader(TreeReader):
    def __init__(self, origin: DebianOrigin, cache: Path):
        root, self.deb = debian_root(origin, cache)
        super().__init__(root, origin.include, origin.exclude, origin.describe())


# ---- PyPI -----------------------------------------------------------------------------------------
def pypi_file(origin: PypiOrigin, cache: Path) -> Path:
    """Download (once) the exact distribution file of a PyPI release with pip."""
    dest = cache / "pypi" / origin.file
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".pip.", dir=dest.parent))
    try:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(tmp)]
        if origin.file.endswith(".whl"):
            parts = origin.file[:-4].split("-")
            py, abi, plat = parts[-3], parts[-2], parts[-1]
            cmd += ["--only-binary", ":all:", "--implementation", "py" if py.startswith("py") else py[:2]]
            cmd += ["--python-version", re.sub(r"^\D+", "", py.split(".")[0]) or "3", "--abi", abi]
            cmd += [a for p in plat.split(".") for a in ("--platform", p)]
        else:
            cmd += ["--no-binary", ":all:", "--no-build-isolation"]
        cmd.append(f"{origin.package}=={origin.version}")
        _run(cmd, tmp, origin.describe())
        got = tmp / origin.file
        if not got.is_file():
            raise OriginError(
                f"{origin.describe()}: pip fetched {[p.name for p in tmp.iterdir()]}, not {origin.file}"
            )
        os.replace(got, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


class PypiReader(Reader):
    def __init__(self, origin: PypiOrigin, cache: Path):
        self.origin = origin
        self.file = pypi_file(origin, cache)
        self._members: dict[str, object] = {}
        if self.file.name.endswith((".whl", ".zip")):
            self._zip: zipfile.ZipFile | None = zipfile.ZipFile(self.file)
            self._tar: tarfile.TarFile | None = None
            for zi in self._zip.infolist():
                if not zi.is_dir():
                    self._members[zi.filename] = zi
        else:
            self._zip = None
            self._tar = tarfile.open(self.file)
            for ti in self._tar.getmembers():
                if ti.isfile():
                    self._members[ti.name] = ti

    def paths(self) -> list[str]:
        return sorted(p for p in self._members if selected(p, self.origin.include, self.origin.exclude))

    def read(self, path: str) -> bytes:
        m = self._members[path]
        if self._zip is not None:
            return self._zip.read(m)  # type: ignore[arg-type]
        assert self._tar is not None
        f = self._tar.extractfile(m)  # type: ignore[arg-type]
        assert f is not None
        return f.read()

    def locator(self, path: str) -> str:
        return f"{self.origin.describe()}:{path}"

    def close(self) -> None:
        for h in (self._zip, self._tar):
            if h is not None:
                h.close()


def open_reader(src: Source, *, mirrors: str | os.PathLike, cache: Path, base: Path) -> Reader:
    """The reader of a source's origin (downloads a package into the cache the first time)."""
    o = src.origin
    if isinstance(o, GithubOrigin):
        return GithubReader(o, mirrors)
    if isinstance(o, DebianOrigin):
        return DebianReader(o, cache)
    if isinstance(o, PypiOrigin):
        return PypiReader(o, cache)
    return LocalReader(o, base)


def iter_paths(reader: Reader) -> Iterator[str]:
    yield from reader.paths()
