"""The sandbox image: a debootstrap rootfs, cached by recipe hash, imported into Docker.

No container registry can be reached on these machines, so the image is built from a
Debian rootfs made with ``debootstrap``. The rootfs is cached as a tarball (for
``docker import``) and as an extracted directory (for the bubblewrap backend) under
``${ROWGYM_CACHE:-~/.cache/rowgym}/sandbox/``, keyed by a hash of the recipe below, so
it is rebuilt only when the recipe changes.

>>> from rowgym.sandboxes.image import RECIPE, recipe_hash
>>> len(recipe_hash(RECIPE))
16

Command line (used by ``scripts/env_up.sh``)::

    python -m rowgym.sandboxes.image build     # rootfs + docker image, idempotent
    python -m rowgym.sandboxes.image rootfs    # print the rootfs dir (build if needed)
    python -m rowgym.sandboxes.image hash      # print the recipe hash
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMAGE_REPO = "rowgym-sandbox"
IMAGE_TAG = "py311"
IMAGE = f"{IMAGE_REPO}:{IMAGE_TAG}"
RECIPE_LABEL = "org.rowgym.recipe"
SANDBOX_UID = 1000

# Run inside the fresh rootfs (chroot) after debootstrap. It adds the unprivileged
# user the sandboxes run as, trims what no task needs (docs, man pages, apt lists) to
# keep the tarball and `docker import` small and fast, and precompiles bytecode.
_POST_SETUP = r"""
set -eu
echo 'sandbox:x:1000:1000:rowgym sandbox:/tmp:/bin/sh' >> /etc/passwd
echo 'sandbox:x:1000:' >> /etc/group
echo 'sandbox:!:19000:0:99999:7:::' >> /etc/shadow
mkdir -p /workspace && chown 1000:1000 /workspace
rm -rf /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/locale/* \
       /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old /var/log/*
# The root is read-only at run time, so Python can never cache bytecode there: compile
# it all now, else every `import pytest` recompiles from source (~2 s instead of ~0.2 s).
python3 -m compileall -q -j 0 /usr/lib/python3 /usr/lib/python3.11 >/dev/null || true
printf '[safe]\n\tdirectory = *\n[user]\n\tname = sandbox\n\temail = sandbox@rowgym.invalid\n' > /etc/gitconfig
"""


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What goes into the sandbox rootfs. Any change here changes the hash and rebuilds.

    Attributes:
        suite: Debian suite given to debootstrap.
        variant: debootstrap variant; ``minbase`` is essential packages + apt only.
        include: Extra packages (what the repo-patch tasks need: Python, pytest, git).
        post_setup: Shell script run in a chroot of the new rootfs.
    """

    suite: str = "bookworm"
    variant: str = "minbase"
    include: tuple[str, ...] = ("python3", "python3-pytest", "git")
    post_setup: str = _POST_SETUP


RECIPE = Recipe()


def recipe_hash(recipe: Recipe = RECIPE) -> str:
    """Return a short, stable hash of the recipe (16 hex digits)."""
    blob = json.dumps(dataclasses.asdict(recipe), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cache_dir() -> Path:
    """Return the sandbox cache dir, ``${ROWGYM_CACHE:-~/.cache/rowgym}/sandbox``."""
    root = os.environ.get("ROWGYM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "rowgym")
    return Path(root) / "sandbox"


def rootfs_tarball(recipe: Recipe = RECIPE) -> Path:
    """Return the cached tarball path for the recipe (may not exist yet)."""
    return cache_dir() / f"rootfs-{recipe_hash(recipe)}.tar"


def rootfs_dir(recipe: Recipe = RECIPE) -> Path:
    """Return the extracted rootfs dir used by the bubblewrap backend (may not exist yet)."""
    return cache_dir() / f"rootfs-{recipe_hash(recipe)}"


def _log(msg: str) -> None:
    print(f"[env-up] {msg}", flush=True)


def debian_mirror() -> str:
    """Return the Debian mirror apt already uses (``ROWGYM_DEBIAN_MIRROR`` overrides it).

    Reads deb822 ``*.sources`` files and one-line ``*.list`` files, skipping the
    security suite, because debootstrap needs the main archive.
    """
    if os.environ.get("ROWGYM_DEBIAN_MIRROR"):
        return os.environ["ROWGYM_DEBIAN_MIRROR"]
    files = sorted(Path("/etc/apt/sources.list.d").glob("*")) + [Path("/etc/apt/sources.list")]
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        for uri in re.findall(r"^\s*URIs:\s*(\S+)", text, re.M) + re.findall(
            r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.M
        ):
            if "debian" in uri and "security" not in uri:
                return uri
    return "http://deb.debian.org/debian"


def build_rootfs(recipe: Recipe = RECIPE, force: bool = False) -> Path:
    """Build (or reuse) the cached rootfs tarball and extracted dir for ``recipe``.

    Args:
        recipe: The recipe to build.
        force: Rebuild even when the cache has this recipe.

    Returns:
        The extracted rootfs directory.
    """
    tarball, root = rootfs_tarball(recipe), rootfs_dir(recipe)
    cache_dir().mkdir(parents=True, exist_ok=True)
    if force:
        tarball.unlink(missing_ok=True)
        shutil.rmtree(root, ignore_errors=True)
    if not tarball.exists():
        if shutil.which("debootstrap") is None:
            raise SystemExit("debootstrap is missing: run `make env-up` (apt-get install debootstrap)")
        mirror = debian_mirror()
        _log(f"debootstrap {recipe.suite} ({recipe.variant}, +{','.join(recipe.include)}) from {mirror} ...")
        t0 = time.monotonic()
        # Build in a temp dir beside the cache and rename at the end, so a killed build
        # never leaves a half rootfs that looks finished.
        with tempfile.TemporaryDirectory(dir=cache_dir(), prefix=".build-") as tmp:
            build = Path(tmp) / "root"
            debs = cache_dir() / "debs"  # downloaded .debs, reused when only the recipe's script changes
            debs.mkdir(exist_ok=True)
            cmd = [
                "debootstrap",
                f"--cache-dir={debs}",
                f"--variant={recipe.variant}",
                f"--include={','.join(recipe.include)}",
                recipe.suite,
                str(build),
                mirror,
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
                raise SystemExit(f"debootstrap failed (exit {proc.returncode})")
            subprocess.run(["chroot", str(build), "/bin/sh", "-c", recipe.post_setup], check=True)
            partial = tarball.with_suffix(".tar.part")
            subprocess.run(["tar", "-C", str(build), "--numeric-owner", "-cf", str(partial), "."], check=True)
            partial.rename(tarball)
        _log(f"rootfs built in {time.monotonic() - t0:.0f}s: {tarball} ({tarball.stat().st_size >> 20} MiB)")
    else:
        _log(f"rootfs cached: {tarball}")
    if not root.exists():
        partial_dir = root.with_name(root.name + ".part")
        shutil.rmtree(partial_dir, ignore_errors=True)
        partial_dir.mkdir()
        subprocess.run(["tar", "-C", str(partial_dir), "--numeric-owner", "-xf", str(tarball)], check=True)
        partial_dir.rename(root)
        _log(f"rootfs extracted for bubblewrap: {root}")
    _prune_old(recipe)
    return root


def _prune_old(recipe: Recipe) -> None:
    """Delete cached rootfs builds of other recipes (each is a few hundred MB)."""
    keep = {rootfs_tarball(recipe).name, rootfs_dir(recipe).name}
    for p in cache_dir().glob("rootfs-*"):  # never the shared debs/ cache
        if p.name not in keep and not p.name.endswith(".part"):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def image_recipe_label(image: str = IMAGE) -> str | None:
    """Return the recipe hash label of a local Docker image, or None if it is absent."""
    proc = subprocess.run(
        ["docker", "image", "inspect", image, "--format", f'{{{{index .Config.Labels "{RECIPE_LABEL}"}}}}'],
        capture_output=True,
        text=True,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def build_image(recipe: Recipe = RECIPE, force: bool = False) -> str:
    """Import the cached rootfs as ``rowgym-sandbox:py311`` unless it is already current.

    Returns:
        The image tag.
    """
    h = recipe_hash(recipe)
    if not force and image_recipe_label() == h:
        _log(f"docker image {IMAGE} is current (recipe {h})")
        return IMAGE
    if not rootfs_tarball(recipe).exists():
        build_rootfs(recipe)
    _log(f"docker import {IMAGE} (recipe {h}) ...")
    changes = [
        f"LABEL {RECIPE_LABEL}={h}",
        f"USER {SANDBOX_UID}:{SANDBOX_UID}",
        "WORKDIR /workspace",
        "ENV HOME=/tmp PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8",
        'CMD ["/bin/sh"]',
    ]
    cmd = ["docker", "import"]
    for c in changes:
        cmd += ["--change", c]
    cmd += [str(rootfs_tarball(recipe)), IMAGE]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["docker", "tag", IMAGE, f"{IMAGE_REPO}:{h}"], check=True)
    # Drop images of older recipes (tagged by their hash) so they do not pile up.
    tags = subprocess.run(
        ["docker", "image", "ls", IMAGE_REPO, "--format", "{{.Tag}}"], capture_output=True, text=True
    ).stdout.split()
    stale = [f"{IMAGE_REPO}:{t}" for t in tags if re.fullmatch(r"[0-9a-f]{16}", t) and t != h]
    if stale:
        subprocess.run(["docker", "rmi", *stale], capture_output=True)
    subprocess.run(["docker", "image", "prune", "-f", "--filter", f"label={RECIPE_LABEL}"], capture_output=True)
    _log(f"docker image {IMAGE} ready")
    return IMAGE


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m rowgym.sandboxes.image``."""
    ap = argparse.ArgumentParser(prog="python -m rowgym.sandboxes.image", description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["build", "rootfs", "image", "hash"])
    ap.add_argument("--force", action="store_true", help="rebuild even when cached")
    args = ap.parse_args(argv)
    if args.what == "hash":
        print(recipe_hash())
    elif args.what == "rootfs":
        print(build_rootfs(force=args.force))
    elif args.what == "image":
        build_image(force=args.force)
    else:
        build_rootfs(force=args.force)
        if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
            build_image(force=args.force)
        else:
            _log("docker daemon not answering: skipped the image (the bubblewrap backend still works)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
