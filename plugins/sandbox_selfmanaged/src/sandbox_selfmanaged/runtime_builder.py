"""Building one runtime: install its packages for the sandboxes' interpreter and prepare them.

Python: ``uv pip install --target`` (or the interpreter's own ``pip --target``), a ``.pth`` hook
giving matplotlib writable, prebuilt config and font cache, the CJK font, ``.pyc`` compiled with
the paths the sandbox sees. JavaScript: ``npm install`` into ``node_modules``. Both: the host
libraries their native code loads, found with ``ldd``, and a manifest (packages with versions)
written last, which is what makes a build complete. Every installer line is reported as progress.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from sandbox_selfmanaged.procs import ProcessSupervisor
from sandbox_selfmanaged.rootfs import PythonInstall
from sandbox_selfmanaged.runtimes import (
    MANIFEST,
    Progress,
    RuntimeBuildError,
    RuntimeDefinition,
    Toolchain,
    node_global_folder,
)

BUILD_TIMEOUT = 1800.0
CJK_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
)
"""CJK-capable fonts from Debian packages (fonts-wqy-microhei first), the first found is used."""
FALLBACK_LIBRARIES = ("libstdc++.so.6", "libgcc_s.so.1")
"""Added whether ``ldd`` names them or not: wheels may ``dlopen`` them."""
LIBRARY_DIRS = (
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
)


def installer_environment() -> dict[str, str]:
    """The builder's environment for installers: ours (proxies, HOME for their caches), no secrets of ours."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}


class Builder:
    """One build of one definition into ``work`` (a new folder), complete once its manifest is written.

    The caller (:class:`~sandbox_selfmanaged.runtime_store.RuntimeStore`) moves it into place.
    """

    def __init__(
        self, definition: RuntimeDefinition, toolchain: Toolchain, supervisor: ProcessSupervisor, progress: Progress, work: Path
    ) -> None:
        self.definition = definition
        self.toolchain = toolchain
        self.supervisor = supervisor
        self.progress = progress
        self.digest = definition.digest(toolchain.interpreter(definition.language))
        self.work = work

    def run(self) -> None:
        """Install, prepare and describe the packages; raises :class:`RuntimeBuildError`."""
        name = self.definition.name
        started = time.monotonic()
        self.progress(f"runtime {name}: building ({self.definition.language}: {' '.join(self.definition.requirements)})")
        self.work.mkdir(parents=True)
        if self.definition.language == "python":
            mount_point, content = self._build_python()
        else:
            mount_point, content = self._build_node()
        packages = _python_packages(content) if self.definition.language == "python" else _node_packages(content)
        libraries = self._system_libraries(content)
        manifest = {
            "name": name,
            "language": self.definition.language,
            "digest": self.digest,
            "requirements": list(self.definition.requirements),
            "packages": packages,
            "libraries": libraries,
            "mount_point": mount_point,
            "built_at": time.time(),
            "interpreter": self.toolchain.interpreter(self.definition.language),
        }
        (self.work / MANIFEST).write_text(json.dumps(manifest, indent=2))
        self.progress(
            f"runtime {name}: built in {time.monotonic() - started:.1f}s, {len(packages)} packages "
            f"({', '.join(f'{k} {v}' for k, v in sorted(packages.items())[:12])}{', ...' if len(packages) > 12 else ''})"
        )

    # -- python -------------------------------------------------------------------------------

    def _build_python(self) -> tuple[str, Path]:
        python = self.toolchain.python
        assert python is not None
        target = self.work / "python"
        requirements = self.work / "requirements.txt"
        requirements.write_text("\n".join(self.definition.requirements) + "\n")
        env = installer_environment()
        if self.toolchain.uv:
            argv = [self.toolchain.uv, "pip", "install", "--python", python.executable, "--target", str(target), "-r", str(requirements)]
        elif self._has_pip(python.executable):
            argv = [
                python.executable, "-m", "pip", "install",
                "--disable-pip-version-check", "--root-user-action=ignore", "--no-compile", "--no-warn-script-location",
                "--target", str(target), "-r", str(requirements),
            ]
        else:
            raise RuntimeBuildError(
                "cannot install Python packages: neither uv nor pip is available "
                f"(install uv, or the Debian package python3-pip for {python.executable})"
            )
        self._stream(argv, env, "install")
        target.mkdir(exist_ok=True)
        self._write_site_hook(target)
        if (target / "matplotlib").is_dir():
            self._prepare_matplotlib(target, python)
        # .pyc for the sandbox's interpreter, with the paths the sandbox sees (for tracebacks).
        self._stream(
            [python.executable, "-m", "compileall", "-q", "-j", "0", "-s", str(target), "-p", python.site_packages, str(target)],
            env, "compile", check=False,
        )
        return python.site_packages, target

    def _has_pip(self, executable: str) -> bool:
        return self.supervisor.run([executable, "-m", "pip", "--version"], timeout=60).ok

    def _write_site_hook(self, target: Path) -> None:
        """A ``.pth`` hook run at interpreter start: matplotlib gets a writable, prebuilt config dir."""
        (target / "_sandbox_runtime.py").write_text(_SITE_HOOK)
        (target / "_sandbox_runtime.pth").write_text("import _sandbox_runtime\n")

    def _prepare_matplotlib(self, target: Path, python: PythonInstall) -> None:
        config = target / "_sandbox_runtime_mpl"
        config.mkdir()
        families = ["DejaVu Sans"]
        font = next((f for f in CJK_FONTS if os.path.isfile(f)), None)
        if font is None:
            self.progress(
                f"runtime {self.definition.name}: warning: no CJK font found (install the Debian package "
                "fonts-wqy-microhei); charts will show boxes for Chinese, Japanese and Korean text"
            )
        else:
            fonts_dir = target / "matplotlib" / "mpl-data" / "fonts" / "ttf"
            shutil.copyfile(font, fonts_dir / os.path.basename(font))
            families.append(_font_family(font))
        (config / "matplotlibrc").write_text(
            "backend: Agg\n"
            # Listing the families themselves (not "sans-serif") makes matplotlib fall back glyph by glyph.
            f"font.family: {', '.join(families)}\n"
            f"font.sans-serif: {', '.join(families)}, sans-serif\n"
            "axes.unicode_minus: False\n"
        )
        script = (
            "import os, sys; sys.path.insert(0, sys.argv[1]); os.environ['MPLCONFIGDIR'] = sys.argv[2]\n"
            "import matplotlib; matplotlib.use('Agg'); import matplotlib.font_manager as fm\n"
            "print(len(fm.fontManager.ttflist), 'fonts cached')\n"
        )
        env = {**installer_environment(), "MPLCONFIGDIR": str(config)}
        self._stream([python.executable, "-I", "-S", "-c", script, str(target), str(config)], env, "font cache")
        for cache in config.glob("fontlist-*.json"):
            _keep_runtime_fonts(cache)

    # -- javascript ---------------------------------------------------------------------------

    def _build_node(self) -> tuple[str, Path]:
        assert self.toolchain.node is not None
        if not self.toolchain.npm:
            raise RuntimeBuildError("cannot install Node packages: npm is not installed (Debian package npm)")
        (self.work / "package.json").write_text(json.dumps({"name": f"sandbox-runtime-{self.definition.name}", "private": True}))
        argv = [
            self.toolchain.npm, "install", "--prefix", str(self.work), "--no-audit", "--no-fund",
            "--omit=dev", "--no-package-lock", "--ignore-scripts", *self.definition.requirements,
        ]
        self._stream(argv, installer_environment(), "install")
        content = self.work / "node_modules"
        if not content.is_dir():
            raise RuntimeBuildError(f"npm install left no node_modules in {self.work}")
        return node_global_folder(self.toolchain.node), content

    # -- shared -------------------------------------------------------------------------------

    def _system_libraries(self, content: Path) -> list[str]:
        """Host libraries the runtime's native modules load (for the sandboxes' root filesystem)."""
        found: set[str] = set()
        for directory, _dirs, files in os.walk(content):
            for name in files:
                if not (name.endswith(".so") or ".so." in name or name.endswith(".node")):
                    continue
                result = self.supervisor.run(["/usr/bin/ldd", os.path.join(directory, name)], timeout=60)
                if not result.ok:
                    continue
                for line in result.stdout.decode("utf-8", "replace").splitlines():
                    if "=>" not in line:
                        continue
                    loaded = line.split("=>", 1)[1].split("(", 1)[0].strip()
                    if loaded.startswith("/") and not loaded.startswith(str(self.work)):
                        found.add(loaded)
        for library in FALLBACK_LIBRARIES:
            path = next((os.path.join(d, library) for d in LIBRARY_DIRS if os.path.exists(os.path.join(d, library))), None)
            if path is not None:
                found.add(path)
        return sorted(found)

    def _stream(self, argv: Sequence[str], env: Mapping[str, str], step: str, *, check: bool = True) -> None:
        """Run a build step, logging its output line by line as progress."""
        name = self.definition.name
        self.progress(f"runtime {name}: {step}: {' '.join(argv[:3])} ...")
        read_fd, write_fd = os.pipe()
        try:
            pid = self.supervisor.spawn(argv, stdout=write_fd, stderr=write_fd, env=env)
        finally:
            os.close(write_fd)
        tail: list[str] = []
        deadline = time.monotonic() + BUILD_TIMEOUT
        buffer = b""
        with os.fdopen(read_fd, "rb", buffering=0) as pipe, selectors.DefaultSelector() as selector:
            selector.register(pipe, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    self.supervisor.kill(pid)
                    break
                chunk = pipe.read(65536)
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = re.split(rb"[\r\n]", buffer)
                for line in lines:
                    text = line.decode("utf-8", "replace").rstrip()
                    if text:
                        self.progress(f"runtime {name}: {step}: {text}")
                        tail = [*tail[-19:], text]
        code = self.supervisor.wait(pid, 30)
        self.supervisor.forget(pid)
        if code != 0 and check:
            raise RuntimeBuildError(f"runtime {name}: {step} failed (exit {code}): " + " | ".join(tail[-8:]))
        if code != 0:
            self.progress(f"runtime {name}: {step} exited with {code} (not fatal)")


def _keep_runtime_fonts(cache: Path) -> None:
    """Drop the host's system fonts from a font cache: sandboxes have only matplotlib's own.

    Matplotlib records its own fonts relative to its data folder, others by absolute path; an
    entry whose file is missing inside would make it rebuild the cache in every sandbox.
    """
    data = json.loads(cache.read_text())
    for key in ("ttflist", "afmlist"):
        data[key] = [entry for entry in data.get(key, []) if not os.path.isabs(entry["fname"])]
    cache.write_text(json.dumps(data))


def _font_family(path: str) -> str:
    known = {
        "wqy-microhei": "WenQuanYi Micro Hei",
        "wqy-zenhei": "WenQuanYi Zen Hei",
        "DroidSansFallbackFull": "Droid Sans Fallback",
        "NotoSansCJK-Regular": "Noto Sans CJK JP",
    }
    return known.get(os.path.basename(path).rsplit(".", 1)[0], "sans-serif")


def _python_packages(target: Path) -> dict[str, str]:
    packages: dict[str, str] = {}
    for info in target.glob("*.dist-info"):
        name: str | None = None
        version: str | None = None
        try:
            with open(info / "METADATA", encoding="utf-8", errors="replace") as metadata:
                for line in metadata:
                    if line.startswith("Name:"):
                        name = line.split(":", 1)[1].strip()
                    elif line.startswith("Version:"):
                        version = line.split(":", 1)[1].strip()
                    elif not line.strip():
                        break
        except OSError:
            continue
        if name and version:
            packages[name] = version
    return packages


def _node_packages(node_modules: Path) -> dict[str, str]:
    packages: dict[str, str] = {}
    for manifest in [*node_modules.glob("*/package.json"), *node_modules.glob("@*/*/package.json")]:
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("name") and data.get("version"):
            packages[str(data["name"])] = str(data["version"])
    return packages


_SITE_HOOK = '''"""Run at interpreter start (from _sandbox_runtime.pth): sandbox runtime set-up.

Matplotlib needs *writable* config and cache dirs, else it builds a font cache in a temporary
folder on every start; the runtime folder is read-only, so its prebuilt matplotlibrc and font
cache are copied to the default places under $HOME (the sandbox's /tmp). No variable is set.
"""
import os


def _prepare():
    source = os.path.join(os.path.dirname(__file__), "_sandbox_runtime_mpl")
    if not os.path.isdir(source):
        return
    home = os.environ.get("HOME") or "/tmp"
    try:
        for name in os.listdir(source):
            kind = ".config" if name == "matplotlibrc" else ".cache"
            target = os.path.join(home, kind, "matplotlib")
            os.makedirs(target, exist_ok=True)
            with open(os.path.join(source, name), "rb") as src, open(os.path.join(target, name), "wb") as dst:
                dst.write(src.read())
    except OSError:
        return
    # plt.show() cannot show anything here; the runner returns open figures as PNG artifacts.
    import warnings
    warnings.filterwarnings("ignore", message=".*non-interactive, and thus cannot be shown")


_prepare()
'''
