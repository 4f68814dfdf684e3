"""A real single-member etcd (Debian etcd-server 3.4, ``/usr/bin/etcd``) for the IO tests.

Rules:
1. Ports are free loopback ports found by binding port 0 first; 2379/2380 are never assumed.
2. Each server has its own temporary data dir; ``stop``/``kill`` keep it, so ``start`` again
   resumes the same data on the same ports (an etcd restart). ``start(client_port=...)`` can
   bring the same member up on another client port, which a watcher does not know about: the
   writes made there are "writes while the watcher was disconnected". ``pause``/``resume``
   freeze and thaw the process (a hung etcd); ``kill`` also ends a frozen one.
3. The child gets no ``ETCD_*`` variable from our environment (etcd reads them as flags).
4. ``start`` returns only when ``/health`` answers ``true``; a server that does not become healthy
   is killed and its log tail is in the error.
5. Optional TLS (server certificate, client certificates required) for the TLS/auth tests.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ETCD_BINARY = "/usr/bin/etcd"
ETCDCTL_BINARY = "/usr/bin/etcdctl"
HEALTH_TIMEOUT = 30.0
TLS_ROOT_PASSWORD = "hB-root-pw"  # the root user of the TLS/auth server fixture


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def generate(cls, directory: Path) -> TlsFiles:
        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                "/CN=hB-test-ca", "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
        for name, extension in (
            ("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
            ("client", "extendedKeyUsage=clientAuth"),
        ):
            (directory / f"{name}.ext").write_text(extension + "\n")
            openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=hB-{name}",
                    "-keyout", f"{name}.key", "-out", f"{name}.csr")  # fmt: skip
            openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                    "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
                    "-out", f"{name}.crt")  # fmt: skip
        return cls(
            ca=directory / "ca.crt",
            server_cert=directory / "server.crt",
            server_key=directory / "server.key",
            client_cert=directory / "client.crt",
            client_key=directory / "client.key",
        )


class EtcdServer:
    """One etcd member on loopback; see the module rules."""

    def __init__(self, tls: TlsFiles | None = None) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="hB-etcd-"))
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "etcd.log"
        self.tls = tls
        self.client_port = free_port()
        self.peer_port = free_port()
        self.serving_port = self.client_port
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, client_port: int | None = None) -> None:
        """Start (or restart) the member on its data dir; on ``client_port`` if given."""
        if self.running:
            raise RuntimeError("etcd is already running")
        port = client_port or self.client_port
        self.serving_port = port
        client_url = f"{self.scheme}://127.0.0.1:{port}"
        peer_url = f"http://127.0.0.1:{self.peer_port}"
        command = [
            ETCD_BINARY,
            "--name", "hB",
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", client_url,
            "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url,
            "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"hB={peer_url}",
            "--logger", "zap",
            "--log-level", "warn",
        ]  # fmt: skip
        if self.tls:
            command += [
                "--cert-file", str(self.tls.server_cert),
                "--key-file", str(self.tls.server_key),
                "--trusted-ca-file", str(self.tls.ca),
                "--client-cert-auth",
            ]  # fmt: skip
        env = {name: value for name, value in os.environ.items() if not name.startswith("ETCD")}
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self._wait_healthy(port)

    def _wait_healthy(self, port: int) -> None:
        deadline = time.monotonic() + HEALTH_TIMEOUT
        url = f"{self.scheme}://127.0.0.1:{port}/health"
        context = None
        if self.tls:
            context = ssl.create_default_context(cafile=str(self.tls.ca))
            context.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
        while time.monotonic() < deadline:
            if not self.running:
                break
            try:
                with urllib.request.urlopen(url, timeout=2, context=context) as response:
                    if json.loads(response.read()).get("health") == "true":
                        return
            except OSError:
                pass
            time.sleep(0.1)
        self.kill()
        tail = self.log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"etcd did not become healthy on {url}:\n{tail}")

    def stop(self) -> None:
        """Graceful stop (SIGTERM), data kept."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """Crash (SIGKILL), data kept."""
        self._end(signal.SIGKILL)

    def _end(self, signum: int) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signum)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections stay open but nothing answers."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.kill()
        self.start()

    def etcdctl(self, *args: str, client_port: int | None = None) -> str:
        """Run etcdctl v3 against this member (``--user`` etc. go in ``args``)."""
        command = [
            ETCDCTL_BINARY,
            f"--endpoints={self.scheme}://127.0.0.1:{client_port or self.client_port}",
        ]
        if self.tls:
            command += [
                f"--cacert={self.tls.ca}",
                f"--cert={self.tls.client_cert}",
                f"--key={self.tls.client_key}",
            ]
        env = {name: value for name, value in os.environ.items() if not name.startswith("ETCD")}
        env["ETCDCTL_API"] = "3"
        done = subprocess.run(
            command + list(args), check=True, capture_output=True, text=True, env=env
        )
        return done.stdout

    def destroy(self) -> None:
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)
