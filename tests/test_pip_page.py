"""A pip user's web page: a fresh clone, the README's first command, then a plain ``pip install ".[serve]"``
with no ``node`` anywhere on PATH; the installed server's page and ``/docs`` work in headless Chromium.

Also: the wheel carries the built page, and the committed build matches the web sources (when Node and
``web/node_modules`` are there to rebuild it).
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import ROOT, make_image
from serve_helpers import free_port

STATIC = ROOT / "src" / "aivsreal" / "web_static"
PAGE_FILES = ("index.html", "assets/page.js", "assets/score.js", "assets/style.css")
BIG_ASSETS = ("assets/ort-wasm-simd-threaded.wasm", "assets/swagger/swagger-ui-bundle.js")


def _clean_env(path: str) -> dict[str, str]:
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "PATH": path, "OMP_NUM_THREADS": "1"}


def _clone(dest: Path) -> Path:
    """What a fresh clone of this tree holds: git's tracked files plus new files git does not ignore."""
    p = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        timeout=60,
    )
    if p.returncode != 0:
        pytest.skip(f"not a git checkout: {p.stderr.decode()[-200:]}")
    for rel in filter(None, p.stdout.decode().split("\0")):
        src = ROOT / rel
        if src.is_file() and not src.is_symlink():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def _readme_first_command() -> str:
    """The README's first set-up command (the line after '# 1.' in the first bash block)."""
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    lines = block.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("# 1."))
    return lines[i + 1].strip()


@pytest.fixture(scope="module")
def pip_user(tmp_path_factory) -> dict:
    """A fresh clone; the README's first command run in it literally, then ``pip install ".[serve]"``;
    PATH holds only the venv and a bin dir of symlinks without node or npm."""
    tmp = tmp_path_factory.mktemp("pip_user")
    clone = _clone(tmp / "clone")
    assert not (clone / "web" / "node_modules").exists()
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    # python3: the interpreter these tests run on (not a shim that needs the rest of PATH)
    (bin_dir / "python3").symlink_to(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
    for tool in ("sh", "bash", "git", "uname", "ldconfig"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(os.path.realpath(found))
    path = f"{clone / '.venv' / 'bin'}{os.pathsep}{bin_dir}"
    assert shutil.which("node", path=path) is None and shutil.which("npm", path=path) is None
    env = _clean_env(path)
    cmd = _readme_first_command()
    assert cmd.startswith("python3 -m venv .venv && .venv/bin/pip install .")
    p = subprocess.run(["bash", "-c", cmd], cwd=clone, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, f"{cmd}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    assert "example" in p.stdout and ("ai" in p.stdout or "real" in p.stdout), p.stdout
    p = subprocess.run(
        [".venv/bin/pip", "install", "-q", "--disable-pip-version-check", ".[serve]"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    (site,) = (clone / ".venv" / "lib").glob("python3*/site-packages")
    return {"clone": clone, "env": env, "site": site, "bin": clone / ".venv" / "bin", "tmp": tmp}


@pytest.fixture(scope="module")
def pip_server(pip_user):
    """The installed ``aivsreal serve`` (shipped default model), run outside the clone."""
    import httpx

    port = free_port()
    log = pip_user["tmp"] / "serve.log"
    run_dir = pip_user["tmp"] / "elsewhere"
    run_dir.mkdir()
    proc = subprocess.Popen(
        [str(pip_user["bin"] / "aivsreal"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=run_dir,
        env=pip_user["env"],
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if proc.poll() is not None:
                raise AssertionError(f"server exited {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            import time

            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
def test_installed_package_carries_the_page(pip_user):
    """A real install (not the editable one) holds the built page, the wasm and Swagger UI."""
    web = pip_user["site"] / "aivsreal" / "web_static"
    assert (pip_user["site"] / "aivsreal" / "cli.py").is_file()
    for rel in PAGE_FILES:
        assert (web / rel).is_file(), rel
    for rel in BIG_ASSETS:
        assert (web / rel).is_file() or (web / f"{rel}.gz").is_file(), rel


@pytest.mark.slow
@pytest.mark.browser
def test_pip_installed_page_and_docs_work_without_node(pip_server, tmp_path):
    """Server mode and on-device mode score an image in Chromium; /docs renders Swagger UI."""
    from test_web import _browser_missing

    why = _browser_missing()
    if why:
        pytest.skip(why)
    import httpx
    from playwright.sync_api import expect
    from test_web import CHROMIUM, FLAGS

    img = tmp_path / "photo.png"
    make_image("real", 256, 5).save(img)
    want = httpx.post(
        f"{pip_server}/v1/predict", files=[("files", (img.name, img.read_bytes()))], timeout=60
    ).json()["results"][0]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        try:
            page = ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{pip_server}/", timeout=180_000)
            expect(page.locator("body[data-ready=true]")).to_have_count(1, timeout=60_000)
            assert "not built" not in page.content() and "missing" not in page.content()
            for mode in ("server", "device"):
                page.check(f"input[name=mode][value={mode}]")
                page.set_input_files("#file-input", [str(img)])
                li = page.locator(f"li.result[data-mode={mode}]")
                expect(li.locator("xpath=self::*[@data-state='done']")).to_have_count(1, timeout=120_000)
                assert float(li.get_attribute("data-score")) == pytest.approx(want["score"], abs=1e-3)
                assert li.get_attribute("data-label") == want["label"]
            assert not errors, errors

            docs = ctx.new_page()
            docs.goto(f"{pip_server}/docs", timeout=180_000)
            expect(docs.locator(".opblock-summary-path", has_text="/v1/predict")).to_have_count(
                1, timeout=60_000
            )
        finally:
            ctx.close()


@pytest.mark.slow
def test_wheel_carries_the_page(tmp_path):
    """``pip wheel`` (no Node involved) packs the same page files the repository holds."""
    clone = _clone(tmp_path / "clone")
    p = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", "dist", "."],
        cwd=clone,
        env=_clean_env(f"{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if p.returncode != 0 and "No module named" in p.stderr:
        pytest.skip(f"no build backend in this venv: {p.stderr[-300:]}")
    assert p.returncode == 0, p.stderr[-3000:]
    (whl,) = (clone / "dist").glob("aivsreal-*.whl")
    names = set(zipfile.ZipFile(whl).namelist())
    want = {
        f"aivsreal/web_static/{f.relative_to(STATIC).as_posix()}" for f in STATIC.rglob("*") if f.is_file()
    }
    assert want and want <= names, sorted(want - names)[:5]


def test_committed_page_build_is_fresh(tmp_path):
    """Rebuilding the page from web/ gives the committed files (a web change was rebuilt and committed)."""
    node = shutil.which("node")
    if node is None or not (ROOT / "web" / "node_modules" / "esbuild").is_dir():
        pytest.skip("node or web/node_modules missing (cd web && npm ci)")
    out = tmp_path / "page"
    p = subprocess.run(
        [node, "build.mjs", "--only", "page", "--page-out", str(out)],
        cwd=ROOT / "web",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr

    def contents(d: Path) -> dict[str, bytes]:
        out = {}
        for f in d.rglob("*"):
            if f.is_file() and "__pycache__" not in f.parts:
                data = f.read_bytes()
                out[f.relative_to(d).as_posix()] = gzip.decompress(data) if f.suffix == ".gz" else data
        return out

    built, committed = contents(out), contents(STATIC)
    assert sorted(built) == sorted(committed), "rebuild the page: cd web && npm run build:page"
    stale = [k for k in built if built[k] != committed[k]]
    assert not stale, f"stale page files {stale}: cd web && npm run build:page, and commit them"
    for rel in BIG_ASSETS:
        assert (STATIC / f"{rel}.gz").stat().st_size < 5 * 2**20, rel
