"""A Node.js function in the sandbox of bench_sandbox.py: Lambda's init order, Node's own runtime.

The runtime is AWS's runtime interface client for Node.js, `aws-lambda-ric` from npm, pinned
by bench/node/package-lock.json and installed once (it compiles aws-lambda-cpp and curl: a
few minutes) into a cache directory keyed by the lock file, the Node ABI and the machine, so
that only the first run on a machine reaches the registry. The function is an ES module that
reads a secret with `http.get` from the extension's local port, as a Node user writes it.

The extension starts as Lambda starts it; `isolated()` can wrap it in a private user and mount
namespace (util-linux `unshare`) where a test CA bundle is bind-mounted over the system's CA
bundle, and aarch64 programs run under qemu-user-static through a binfmt_misc of that
namespace's own: nothing changes for any other process on the machine.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import shutil
import subprocess
from pathlib import Path

from bench.bench_sandbox import SECRET_ID, TOKEN_HEADER, Result, Runtime, free_port, run_sandbox

BENCH = Path(__file__).resolve().parent
NODE_PROJECT = BENCH / "node"  # package.json and package-lock.json: the pinned runtime
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / (
    "parameters-secrets-extension"
)
RIC_NATIVE = "node_modules/aws-lambda-ric/dist/rapid-client.node"
RIC_MAIN = "node_modules/aws-lambda-ric/bin/index.mjs"

# Where images keep their CA bundle: Amazon Linux (and Fedora, RHEL), Debian and Ubuntu.
SYSTEM_CA_BUNDLES = ("/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/certs/ca-certificates.crt")
# binfmt_misc's line for aarch64 ELF executables (the magic and mask of Debian's
# qemu-user-static); F: the kernel opens the interpreter now, so it need not be visible
# from inside any later mount namespace.
_AARCH64_MAGIC = r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
_AARCH64_MASK = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
AARCH64_SYSROOT = "/usr/aarch64-linux-gnu"  # Debian's libc6-arm64-cross: ld.so and glibc

_READ = f"""\
import http from "node:http";

// What a Node.js function writes to read a secret through the extension.
function readSecret() {{
  const port = process.env.PARAMETERS_SECRETS_EXTENSION_HTTP_PORT;
  const path = "/secretsmanager/get?secretId=" + encodeURIComponent(process.env.SECRET_ID);
  const headers = {{ "{TOKEN_HEADER}": process.env.AWS_SESSION_TOKEN }};
  return new Promise((resolve, reject) => {{
    http.get({{ host: "localhost", port, path, headers }}, (response) => {{
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk) => {{ body += chunk; }});
      response.on("end", () => {{
        if (response.statusCode === 200) resolve(JSON.parse(body).SecretString);
        else reject(new Error(`status ${{response.statusCode}}: ${{body}}`));
      }});
    }}).on("error", reject);
  }});
}}
"""
HANDLERS = {
    "constant": 'export const handler = async () => ({ value: "constant" });\n',
    "zero-cost": _READ + "\nexport const handler = async () => ({ value: await readSecret() });\n",
    "ext": _READ + "\nexport const handler = async () => ({ value: await readSecret() });\n",
    # At init (top-level await: the init phase waits for it) and on every invoke.
    "ext-init": _READ
    + "\nconst atInit = await readSecret();\n\n"
    + "export const handler = async () => ({ value: await readSecret(), init: atInit });\n",
}
VARIANTS = tuple(HANDLERS)
WITH_EXTENSION = {"ext", "ext-init"}


class NodeContext:
    """What a Node.js cold start needs: the extension's command, node, the runtime client."""

    def __init__(
        self,
        *,
        extension: Path,
        node: Path,
        runtime_client: Path,
        env: dict[str, str],
        tmp: Path,
        zero_cost_port: int,
    ) -> None:
        self.extension = extension  # the layer's executable, or an isolated() wrapper of it
        self.node = node
        self.runtime_client = runtime_client  # aws-lambda-ric's bin/index.mjs
        self.env = env  # credentials, region, AWS_ENDPOINT_URL, PATH
        self.tmp = tmp
        self.zero_cost_port = zero_cost_port


def cold_start(variant: str, ctx: NodeContext, *, warm: int = 0, pin: bool = False) -> Result:
    """One Node.js sandbox from nothing to `1 + warm` answered invokes, then its shutdown."""
    task = ctx.tmp / f"node-task-{variant}"
    task.mkdir(exist_ok=True)
    (task / "app.mjs").write_text(HANDLERS[variant])
    extensions = [[str(ctx.extension)]] if variant in WITH_EXTENSION else []
    port = ctx.zero_cost_port if variant == "zero-cost" else free_port()
    env = {**ctx.env, "SECRET_ID": SECRET_ID, "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port)}
    runtime = Runtime(
        # As the managed runtime's bootstrap does: node runs the client, which imports
        # LAMBDA_TASK_ROOT/app.mjs and loops on the Runtime API.
        command=[str(ctx.node), str(ctx.runtime_client), "app.handler"],
        env={"AWS_EXECUTION_ENV": "AWS_Lambda_nodejs20.x"},
        task=task,
    )
    log = ctx.tmp / f"node-{variant}.log"
    return run_sandbox(extensions, runtime, env, log, warm=warm, pin=pin)


def node() -> Path | None:
    found = shutil.which("node")
    return Path(found) if found else None


def runtime_client() -> Path:
    """aws-lambda-ric's entry point, from the cache; `npm ci` it there when absent."""
    node_path = node()
    if node_path is None or shutil.which("npm") is None:
        raise RuntimeError("needs node and npm (Debian: apt-get install nodejs npm)")
    abi = subprocess.run(
        [str(node_path), "-p", "process.versions.modules"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((NODE_PROJECT / name).read_bytes())
    digest.update(f"{abi} {platform.machine()}".encode())
    target = CACHE / f"node-runtime-{digest.hexdigest()[:16]}"
    if not (target / RIC_NATIVE).is_file():
        _npm_ci(target)
    return target / RIC_MAIN


def _npm_ci(target: Path) -> None:
    """Install the lock file's packages into `target`, whole or not at all."""
    building = target.with_name(f"{target.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy(NODE_PROJECT / name, building / name)
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--foreground-scripts"],
        cwd=building,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not (building / RIC_NATIVE).is_file():
        raise RuntimeError(f"npm ci of aws-lambda-ric failed:\n{done.stdout[-3000:]}{done.stderr}")
    shutil.rmtree(target, ignore_errors=True)
    building.rename(target)


def path_without_python(bin_dir: Path) -> str:
    """A PATH like an image without Python: every command of the system's bin directories
    (and node's) as a symlink in `bin_dir`, except python*."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    node_path = node()
    sources = [str(node_path.parent)] if node_path else []
    sources += ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    for source in sources:
        if not os.path.isdir(source):
            continue
        for name in sorted(os.listdir(source)):
            link = bin_dir / name
            if name.startswith("python") or link.is_symlink() or link.exists():
                continue
            link.symlink_to(os.path.join(source, name))
    return str(bin_dir)


def isolated(
    target: Path, wrapper: Path, *, ca_bundle: Path | None = None, aarch64: bool = False
) -> Path:
    """Write `wrapper`: an executable that execs `target` (with its arguments) in a private
    user and mount namespace, where `ca_bundle` (when given) is the content of every system CA
    bundle path present, and (with `aarch64`) aarch64 ELF programs run under qemu-user-static.

    Signals reach `target` itself: each step execs the next.
    """
    steps = ["set -e"]
    if ca_bundle is not None:
        present = [path for path in SYSTEM_CA_BUNDLES if os.path.isfile(path)]
        if not present:
            raise RuntimeError(f"no system CA bundle to cover, looked at {SYSTEM_CA_BUNDLES}")
        steps += [f"mount --bind {shlex.quote(str(ca_bundle))} {path}" for path in present]
    if aarch64:
        qemu = shutil.which("qemu-aarch64-static")
        if qemu is None:
            raise RuntimeError("needs qemu-aarch64-static (Debian: qemu-user-static)")
        line = f":qemu-aarch64:M:0:{_AARCH64_MAGIC}:{_AARCH64_MASK}:{qemu}:F"
        steps += [
            # A binfmt_misc mounted in a user namespace of its own is that namespace's.
            "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc",
            f"printf '%s' {shlex.quote(line)} > /proc/sys/fs/binfmt_misc/register",
            f"export QEMU_LD_PREFIX={AARCH64_SYSROOT}",
        ]
    inner = wrapper.with_name(wrapper.name + ".inner.sh")
    inner.write_text("\n".join([*steps, 'exec "$@"', ""]))
    unshare = shutil.which("unshare") or "unshare"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"exec {unshare} --user --map-root-user --mount /bin/sh {shlex.quote(str(inner))} "
        f'{shlex.quote(str(target))} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper
