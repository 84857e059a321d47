"""Images built on this machine with no registry: Debian and Python bases, the worker and the producer.

Each image is tagged by a hash of its recipe (what goes into it), so a rebuild
happens only when the recipe changes, and the ``:latest`` tag follows it. Images for another
architecture than this machine's (arm64 for Raspberry Pis, on a PC) are built under emulation
(emulation.py) and carry it after their tags: ``workqueue-lab/worker:latest-arm64``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import docker
import docker.errors
from docker.models.images import Image

from workqueue.machine import apt_sources, emulation
from workqueue.machine.packages import SetupError, ensure_commands

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = Path(__file__).resolve().parent / "dockerfiles"
WHEELHOUSE = ROOT / "build" / "wheelhouse"
LOCK = ROOT / "build" / ".images.lock"
REQUIREMENTS = ROOT / "workqueue" / "requirements.txt"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PROJECT_LABEL = "workqueue-lab"
RECIPE_LABEL = "workqueue-lab.recipe"
SUITE = "bookworm"  # the images' release, and the virtual lab's by default

# As Debian's slim images do: no recommended extras, no manuals, docs (but copyrights) or translations;
# apt keeps no downloaded packages (the file Docker's official images carry).
SLIM_DPKG_OPTIONS = [
    '--aptopt=APT::Install-Recommends "false"',
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
]
APT_NO_CACHE = (
    'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };\n'
    'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";'
)

DEBIAN_IMAGE = "workqueue-lab/debian"
PYTHON_IMAGE = "workqueue-lab/python"
# The programs' images, what the roles ship to the lab hosts: the stages of one Dockerfile,
# and each one's own folder.
PROGRAMS_DOCKERFILE = ROOT / "Dockerfile"
PROGRAM_STAGES = {
    "workqueue-lab/worker": ("worker", "worker_image"),
    "workqueue-lab/producer": ("producer", "producer"),
}


def _digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:12]


def _files(paths: Iterable[Path]) -> list[bytes]:
    """Names and contents of files (folders walked in a stable order), for a recipe's hash."""
    found: list[bytes] = []
    for path in paths:
        members = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for member in members:
            if "__pycache__" in member.parts:
                continue
            found += [str(member.relative_to(ROOT)).encode(), member.read_bytes()]
    return found


def suffix(arch: str | None) -> str:
    """What follows an image's tags for an architecture: nothing for this machine's own."""
    return "" if arch is None or arch == emulation.native() else f"-{arch}"


def _existing(client: docker.DockerClient, name: str, tag: str) -> Image | None:
    try:
        return client.images.get(f"{name}:{tag}")
    except docker.errors.ImageNotFound:
        return None


def _tag_latest(client: docker.DockerClient, image: Image, name: str, after: str = "") -> None:
    """Point ``name:latest`` (of the architecture ``after`` says) at the image, and drop the tags of
    the recipes it replaces for that architecture (a recipe is 12 hex digits: no ``-`` but an architecture's)."""
    image.tag(name, f"latest{after}")
    image.reload()
    for old in client.images.list(name=name, filters={"label": RECIPE_LABEL}):
        for tag in old.tags:
            ours = tag.endswith(after) if after else "-" not in tag.rsplit(":", 1)[-1]
            if ours and tag not in image.tags:
                with contextlib.suppress(docker.errors.APIError):  # still used by a container: kept
                    client.images.remove(tag, noprune=False)


def debian_image(release: str = SUITE) -> str:
    """The Debian base's name: one per release (the default release's has none in its name)."""
    return DEBIAN_IMAGE if release == SUITE else f"{DEBIAN_IMAGE}-{release}"


def debian_base(client: docker.DockerClient, release: str = SUITE, arch: str | None = None) -> str:
    """A Debian base image of ``release`` made from Debian's packages (mmdebstrap), trusting this machine's CAs;
    for another architecture than this machine's, made under emulation and tagged with it."""
    sources = apt_sources.for_release(release)
    name, after = debian_image(release), suffix(arch)
    foreign = [f"--arch={arch}"] if after else []
    recipe_args = [*foreign, "--variant=minbase", "--include=ca-certificates", *SLIM_DPKG_OPTIONS, release]
    recipe = _digest([" ".join(recipe_args).encode(), sources.encode(), CA_BUNDLE.read_bytes()])
    if _existing(client, name, recipe + after) is None:
        ensure_commands({"mmdebstrap": "mmdebstrap"})
        if arch is not None:  # the virtual lab asks for its hosts' bases without program_images
            emulation.ensure_emulation(arch)
        took = "a few minutes, emulated" if after else "about a minute"
        print(f"building {name}:{recipe}{after} from Debian's packages (mmdebstrap, {took})...", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            tarball = Path(tmp) / "rootfs.tar"
            sources_file = Path(tmp) / "debian.sources"  # mmdebstrap reads a mirror list by its suffix
            sources_file.write_text(sources)
            # pip inside builds must trust what the host's pip trusts (a proxy's CA, for one);
            # the copy under /usr/local/share survives update-ca-certificates.
            trust = (
                f'cp {CA_BUNDLE} "$1/etc/ssl/certs/ca-certificates.crt" && '
                f'cp {CA_BUNDLE} "$1/usr/local/share/ca-certificates/host-bundle.crt" && '
                f"printf '{APT_NO_CACHE}\\n' > \"$1/etc/apt/apt.conf.d/docker-clean\" && "
                'rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*'
            )
            command = [
                "mmdebstrap",
                "--quiet",
                *recipe_args[:-1],
                f"--customize-hook={trust}",
                recipe_args[-1],
                str(tarball),
                str(sources_file),
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                tail = done.stderr.strip().splitlines()[-3:]
                raise SetupError(f"mmdebstrap failed: {' / '.join(tail)}")
            labels = f"LABEL {RECIPE_LABEL}={recipe} {PROJECT_LABEL}=base"
            if after:  # an import says nothing of its architecture: a build from scratch on its platform does
                (Path(tmp) / "Dockerfile").write_text(f'FROM scratch\nADD rootfs.tar /\n{labels}\nCMD ["bash"]\n')
                client.images.build(path=tmp, tag=f"{name}:{recipe}{after}", platform=f"linux/{arch}", rm=True)
            else:
                client.api.import_image_from_file(
                    str(tarball), repository=name, tag=recipe, changes=[labels, 'CMD ["bash"]']
                )
    image = client.images.get(f"{name}:{recipe}{after}")
    _tag_latest(client, image, name, after)
    return f"{name}:{recipe}{after}"


@contextlib.contextmanager
def one_builder() -> Iterator[None]:
    """Image builds one at a time on this machine: the tests' lanes each ask for their lab's images."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build(
    client: docker.DockerClient,
    name: str,
    dockerfile: Path,
    context: Path,
    buildargs: dict[str, str],
    inputs: Iterable[Path],
    target: str | None = None,
    arch: str | None = None,
) -> str:
    """Build an image (a Dockerfile's ``target`` stage) unless one with the same recipe exists; for another
    architecture than this machine's (its base one of that architecture), under emulation, tagged with it.

    The recipe: the Dockerfile, the inputs, the build args and the stage.
    """
    settings = [*(f"{k}={v}".encode() for k, v in sorted(buildargs.items())), f"target={target}".encode()]
    recipe, after = _digest([*_files([dockerfile, *inputs]), *settings]), suffix(arch)
    if _existing(client, name, recipe + after) is None:
        print(f"building {name}:{recipe}{after}...", flush=True)
        try:
            client.images.build(
                path=str(context),
                dockerfile=str(dockerfile.relative_to(context)),
                tag=f"{name}:{recipe}{after}",
                buildargs=buildargs,
                target=target,
                labels={RECIPE_LABEL: recipe, PROJECT_LABEL: "image"},
                platform=f"linux/{arch}" if after else None,
                rm=True,
                forcerm=True,
            )
        except docker.errors.BuildError as exc:
            lines = [str(chunk.get("stream", chunk.get("error", ""))).strip() for chunk in exc.build_log]
            tail = [line for line in lines if line][-3:]
            raise SetupError(f"building {name} failed: {' / '.join(tail)}") from None
    _tag_latest(client, client.images.get(f"{name}:{recipe}{after}"), name, after)
    return f"{name}:{recipe}{after}"


def python_base(client: docker.DockerClient, arch: str | None = None) -> str:
    debian = debian_base(client, arch=arch)
    dockerfile = DOCKERFILES / "python.Dockerfile"
    return build(client, PYTHON_IMAGE, dockerfile, DOCKERFILES, {"DEBIAN_IMAGE": debian}, [], arch=arch)


def ensure_wheelhouse() -> Path:
    """The pinned Python packages of the images, as wheels, so builds need no package index."""
    pins = [line.strip() for line in REQUIREMENTS.read_text().splitlines() if "==" in line]
    wanted = [re.split(r"==", pin) for pin in pins]
    have = all(any(WHEELHOUSE.glob(f"{name}-{version}-*.whl")) for name, version in wanted)
    if not have:
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:"]
        command += ["--dest", str(WHEELHOUSE), "-r", str(REQUIREMENTS)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SetupError(f"pip download of the images' packages failed: {done.stderr.strip()[-300:]}")
    return WHEELHOUSE


def program_images(
    client: docker.DockerClient, base_image: str | None = None, arch: str | None = None
) -> dict[str, str]:
    """Build the worker and producer images on a base (default: the local Python base), for this machine's
    architecture or ``arch`` (pika is pure Python: the one wheelhouse serves every architecture)."""
    if arch is not None:  # built or not, its images must run here (after a reboot, qemu is registered again)
        emulation.ensure_emulation(arch)
    base = base_image or os.environ.get("BASE_IMAGE") or python_base(client, arch)
    ensure_wheelhouse()
    shared = [*sorted((ROOT / "workqueue").glob("*.py")), REQUIREMENTS, WHEELHOUSE, ROOT / ".dockerignore"]
    built = {}
    for name, (stage, folder) in PROGRAM_STAGES.items():
        inputs = [*shared, *sorted((ROOT / folder).glob("*.py"))]
        built[name] = build(client, name, PROGRAMS_DOCKERFILE, ROOT, {"BASE_IMAGE": base}, inputs, stage, arch)
    return built
