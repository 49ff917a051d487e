"""Builds and starts real AUTOMATIC1111 / Forge installs on the CPU, with Video Loopback in them.

    python tests/real_webui/rig.py build a1111 --source GIT --dest DIR [--mirror DIR] [--controlnet GIT]
    python tests/real_webui/rig.py build forge --source GIT --dest DIR [--mirror DIR]
    python tests/real_webui/rig.py start DIR [--listen] [--nowebui] [--port N]
    python tests/real_webui/rig.py stop DIR

GIT is a git repository (a path or URL) of the WebUI; --commit picks the commit (AUTOMATIC1111
v1.10.1 is 82a973c0). --mirror is a folder holding local git repositories named owner+name/repo
(or owner+name) for the repositories the WebUI clones itself (read from its launch_utils.py, at
the commits it names); without one, they are cloned from GitHub.

What a build does, in DIR:
- webui/: the WebUI at the commit, its repositories/ at their commits, the extension (this
  checkout's tracked files) in extensions/video-loopback, and for AUTOMATIC1111 sd-webui-controlnet
  when --controlnet is given.
- webui/venv: Python 3.11 (Python 3.11's CPU build of torch is what pip finds here) with the
  WebUI's requirements_versions.txt; torch, torchvision and setuptools are held by constraints.txt,
  which also binds every pip the WebUI or an extension's install.py runs later (PIP_CONSTRAINT).
- a random-weight checkpoint that the WebUI takes for SD1.5 but that runs in a blink on the CPU:
  the real text encoder and VAE shapes (Forge reads them from its fixed SD1.5 configs) and a UNet
  with SD1.5's 320 channels and 768-wide context but one level and one block. AUTOMATIC1111 reads
  that UNet's shape from the .yaml beside the checkpoint; Forge from the weights' shapes.
- hf-home/: for AUTOMATIC1111, the openai/clip-vit-large-patch14 tokenizer and config built from
  open_clip's BPE vocabulary (the same one), so it starts offline. Forge ships its own.

Nothing is downloaded at start: HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE and the local repositories.
The WebUI still runs its extensions' install.py at every start, through its own launch.run_pip.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHECKPOINT = "vl-tiny-sd15.safetensors"
EXTENSION = "video-loopback"
TORCH = ("torch==2.13.0", "torchvision==0.28.0")
SETUPTOOLS = "setuptools>=77.0.3,<81"  # torch 2.13 asks >= 77.0.3; pkg_resources is gone from 81
# ControlNet's annotators import mediapipe.solutions, which newer mediapipe dropped; 0.10.9 is the
# last one that also accepts the WebUIs' protobuf 3.20.
HELD = ("mediapipe==0.10.9",)
EXTRA = {"a1111": ["clip-anytorch"], "forge": ["clip-anytorch", "huggingface-guess==0.1.0", "joblib"]}
FAKE_SNAPSHOT = "0" * 40

ARGS = {
    "a1111": ["--skip-torch-cuda-test", "--use-cpu", "all", "--precision", "full", "--no-half", "--no-half-vae"],
    "forge": ["--skip-torch-cuda-test", "--always-cpu", "--all-in-fp32"],
}
COMMON_ARGS = ["--skip-version-check", "--skip-python-version-check", "--no-download-sd-model", "--api"]


def sh(*cmd: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, check=True)


def checkout(source: str, dest: Path, commit: str | None) -> None:
    if dest.exists():
        return
    sh("git", "clone", "--quiet", "--no-checkout", source, dest)
    sh("git", "-C", dest, "checkout", "--quiet", commit or "HEAD")


def github_source(url: str, mirror: Path | None) -> str:
    owner, name = url.rstrip("/").removesuffix(".git").split("/")[-2:]
    if mirror is not None:
        for candidate in (mirror / f"{owner}+{name}" / "repo", mirror / f"{owner}+{name}", mirror / name):
            if candidate.exists():
                return str(candidate)
    return url


def webui_repositories(webui: Path) -> list[tuple[str, str, str]]:
    """(url, folder under repositories/, commit) for each repository the WebUI clones itself."""
    text = (webui / "modules" / "launch_utils.py").read_text(encoding="utf-8")
    urls = dict(re.findall(r"(\w+)_repo = os\.environ\.get\('\w+', [\"']([^\"']+)[\"']\)", text))
    hashes = dict(re.findall(r"(\w+?)_(?:commit_)?hash = os\.environ\.get\('\w+', [\"']([0-9a-f]{40})[\"']\)", text))
    found = []
    for key, folder in re.findall(r"git_clone\((\w+)_repo, repo_dir\('([^']+)'\)", text):
        found.append((urls[key], folder, hashes[key]))
    return found


def copy_extension(dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        if name.startswith("tests/") or (REPO / name).is_symlink() or not (REPO / name).is_file():
            continue  # a WebUI user's clone holds the tests too, but the WebUI loads none of them
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)


def guard_torchvision(venv_python: Path) -> None:
    """PyPI's torchvision is built for CUDA torch; beside the CPU build its C operators are missing
    and importing it fails on registering a fake nms. Registration is skipped for missing ones."""
    code = "import importlib.util; print(importlib.util.find_spec('torchvision').submodule_search_locations[0])"
    folder = Path(
        subprocess.run([str(venv_python), "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    )
    path = folder / "_meta_registrations.py"
    text = path.read_text(encoding="utf-8")
    if "_register_fake_if_present" not in text:
        guard = (
            "\n\ndef _register_fake_if_present(name):\n"
            "    def decorate(fn):\n"
            "        try:\n"
            "            return torch.library.register_fake(name)(fn)\n"
            "        except RuntimeError:\n"
            "            return fn\n"
            "    return decorate\n"
        )
        head, sep, rest = text.partition("\n\n\n")
        text = head + guard + sep + rest.replace("@torch.library.register_fake(", "@_register_fake_if_present(")
        path.write_text(text, encoding="utf-8")
    sh(venv_python, "-c", "import torchvision")


def make_venv(kind: str, dest: Path, webui: Path, python: str) -> Path:
    venv = webui / "venv"
    py = venv / "bin" / "python"
    # The WebUI pins setuptools 69.5.1, which torch 2.13 refuses: the requirements go in without that
    # line, and REQS_FILE (read by launch_utils) points the WebUI at the same list at start.
    lines = (webui / "requirements_versions.txt").read_text(encoding="utf-8").splitlines()
    reqs = [line.split("#")[0].strip() for line in lines if line.strip() and not line.startswith("setuptools")]
    (dest / "requirements.txt").write_text("\n".join(reqs) + "\n", encoding="utf-8")
    # The WebUI's own pins hold too: an extension's install.py (sd-webui-controlnet's, say) would
    # otherwise lift numpy to 2.x under the WebUI's compiled packages.
    pins = [req for req in reqs if "==" in req and not req.startswith("torch")]
    constraints = dest / "constraints.txt"
    constraints.write_text("\n".join([*TORCH, SETUPTOOLS, *HELD, *pins]) + "\n", encoding="utf-8")
    if not py.exists():
        sh(python, "-m", "venv", venv)
    pip = [py, "-m", "pip", "install", "-q", "-c", constraints]
    sh(*pip, *TORCH, SETUPTOOLS)
    sh(*pip, "-r", dest / "requirements.txt", *EXTRA[kind])
    guard_torchvision(py)
    return py


def make_checkpoint(dest: Path, webui: Path, py: Path, ldm: Path) -> None:
    folder = webui / "models" / "Stable-diffusion"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / CHECKPOINT
    if not target.exists():
        env = {**os.environ, "PYTHONPATH": str(ldm)}
        sh(py, Path(__file__).with_name("tiny_checkpoint.py"), target, cwd=dest, env=env)


def make_hf_home(dest: Path, py: Path) -> None:
    snapshot = dest / "hf-home" / "hub" / "models--openai--clip-vit-large-patch14"
    (snapshot / "refs").mkdir(parents=True, exist_ok=True)
    (snapshot.parent / "version.txt").write_text("1", encoding="utf-8")  # else transformers tries to migrate it
    (snapshot / "refs" / "main").write_text(FAKE_SNAPSHOT, encoding="utf-8")
    files = snapshot / "snapshots" / FAKE_SNAPSHOT
    files.mkdir(parents=True, exist_ok=True)
    sh(py, Path(__file__).with_name("tiny_checkpoint.py"), "--clip-tokenizer", files)


def write_config(webui: Path) -> None:
    config = webui / "config.json"
    data = json.loads(config.read_text()) if config.exists() else {}
    data.update({
        "sd_model_checkpoint": CHECKPOINT,
        "live_previews_enable": False,  # the preview decoder is not what these tests look at
        "samples_save": False,
        "grid_save": False,
    })  # fmt: skip
    config.write_text(json.dumps(data, indent=1), encoding="utf-8")


def build(args: argparse.Namespace) -> None:
    dest = Path(args.dest).resolve()
    webui = dest / "webui"
    dest.mkdir(parents=True, exist_ok=True)
    mirror = Path(args.mirror).resolve() if args.mirror else None
    checkout(args.source, webui, args.commit)
    ldm = None
    for url, folder, commit in webui_repositories(webui):
        checkout(github_source(url, mirror), webui / "repositories" / folder, commit)
        if folder == "stable-diffusion-stability-ai":
            ldm = webui / "repositories" / folder
    if ldm is None:  # Forge has no ldm of its own: the checkpoint is made with AUTOMATIC1111's
        ldm = dest / "stablediffusion"
        checkout(github_source("https://github.com/Stability-AI/stablediffusion", mirror), ldm, args.ldm_commit)
    py = make_venv(args.kind, dest, webui, args.python)
    make_checkpoint(dest, webui, py, ldm)
    if args.kind == "a1111":
        make_hf_home(dest, py)
        if args.controlnet:
            checkout(github_source(args.controlnet, mirror), webui / "extensions" / "sd-webui-controlnet", None)
    copy_extension(webui / "extensions" / EXTENSION)
    shutil.copytree(Path(__file__).with_name("probe"), webui / "extensions" / "vl-test-probe", dirs_exist_ok=True)
    write_config(webui)
    (dest / "rig.json").write_text(json.dumps({"kind": args.kind}), encoding="utf-8")
    print(f"built {args.kind} in {dest}; start it with: python {Path(__file__).relative_to(REPO)} start {dest}")


def server_env(dest: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
    env.update({
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
        "PIP_CONSTRAINT": str(dest / "constraints.txt"), "REQS_FILE": str(dest / "requirements.txt"),
        "COMMANDLINE_ARGS": "", "PYTHONUNBUFFERED": "1", "VL_PROBE_LOG": str(dest / "probe.jsonl"),
    })  # fmt: skip
    if (dest / "hf-home").is_dir():
        env["HF_HOME"] = str(dest / "hf-home")
    return env


def start(  # noqa: PLR0913 -- each a launch option, named by every caller
    dest: Path, port: int = 7861, *, listen: bool = False, nowebui: bool = False, timeout: float = 900,
    instance: str = "", env: dict[str, str] | None = None,
) -> str:  # fmt: skip
    """Starts the WebUI in the background; returns its URL once it has finished starting.
    instance: a name for one more server of the same install (its own pid file and log).

    The API answers before it is ready: both WebUIs serve its routes while Api() still builds
    the scripts' default arguments, and a job sent then gets another tab's argument list (seen
    in Forge). "Startup time:" is printed once that is done, in UI and API-only mode alike.
    """
    dest = dest.resolve()
    kind = json.loads((dest / "rig.json").read_text())["kind"]
    webui = dest / "webui"
    cmd = [str(webui / "venv" / "bin" / "python"), "launch.py", *ARGS[kind], *COMMON_ARGS, "--port", str(port)]
    cmd += ["--listen"] if listen else []
    cmd += ["--nowebui"] if nowebui else []
    log_path = dest / f"webui{instance}.log"
    log = open(log_path, "ab")  # noqa: SIM115 -- the server's stdout: open for as long as it runs
    log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
    log.flush()
    offset = log_path.stat().st_size
    proc = subprocess.Popen(
        cmd, cwd=webui, env={**server_env(dest), **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    (dest / f"webui{instance}.pid").write_text(str(proc.pid))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the WebUI exited with {proc.returncode}; see {log_path}")
        with open(log_path, "rb") as f:
            f.seek(offset)
            if b"Startup time:" in f.read():
                return url
        time.sleep(1)
    stop(dest, instance)
    raise TimeoutError(f"the WebUI did not finish starting within {timeout:.0f} s; see {log_path}")


def stop(dest: Path, instance: str = "") -> None:
    pid_file = dest / f"webui{instance}.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.2)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pid_file.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("kind", choices=["a1111", "forge"])
    b.add_argument("--source", required=True, help="the WebUI's git repository (path or URL)")
    b.add_argument("--commit", help="default: the repository's HEAD (AUTOMATIC1111 v1.10.1 is 82a973c0)")
    b.add_argument("--dest", required=True)
    b.add_argument("--mirror", help="folder of local git repositories named owner+name/repo")
    b.add_argument("--controlnet", help="sd-webui-controlnet's git repository (AUTOMATIC1111 only)")
    b.add_argument("--python", default="python3.11")
    b.add_argument("--ldm-commit", default="cf1d67a6fd5ea1aa600c4df58e5b47da45f6bdbf",
                   help="Stability-AI/stablediffusion commit used to shape the checkpoint (Forge)")  # fmt: skip
    s = sub.add_parser("start")
    s.add_argument("dest")
    s.add_argument("--port", type=int, default=7861)
    s.add_argument("--listen", action="store_true")
    s.add_argument("--nowebui", action="store_true")
    t = sub.add_parser("stop")
    t.add_argument("dest")
    args = parser.parse_args()
    if args.command == "build":
        build(args)
    elif args.command == "start":
        print(start(Path(args.dest), args.port, args.listen, args.nowebui))
    else:
        stop(Path(args.dest))


if __name__ == "__main__":
    sys.exit(main())
