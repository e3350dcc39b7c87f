"""ssh targets: rig.yaml `targets:` parsing, and SshTarget against a real SSH server.

The server is paramiko's server side on 127.0.0.1, running each command
with this machine's sh: enough to check host-key policies, key
authentication, timeouts and a lost connection without booting anything.
SFTP (put/get) is checked against dropbear + sftp-server in
tests/integration/test_ssh_target.py.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import socket
import subprocess
import threading
from pathlib import Path

import paramiko
import pytest
import yaml

from orchestrator import config
from orchestrator.budget import Budget
from orchestrator.errors import BadInput, InfraError
from orchestrator.image import read_cpio
from orchestrator.suites.latency import Latency, LatencyConfig
from orchestrator.targets import Capabilities
from orchestrator.targets.ssh import SshEntry, emulated
from orchestrator.targets.ssh.connection import SshTarget, fingerprint
from tests.unit.test_config import default_doc, load_error, write_rig

# -- rig.yaml ------------------------------------------------------------------


def with_targets(targets: dict) -> dict:
    doc = default_doc()
    doc["targets"] = targets
    return doc


def test_no_targets_means_only_qemu(tmp_path: Path) -> None:
    rig = config.load(write_rig(tmp_path, default_doc()))
    assert rig.targets == {}
    assert rig.target("qemu") is None


def test_ssh_entry_with_defaults(tmp_path: Path) -> None:
    key = tmp_path / "id_board"
    key.write_text("not read at load time\n")
    rig = config.load(write_rig(tmp_path, with_targets({
        "qemu": {"type": "qemu"},
        "board": {"type": "ssh", "host": "board.lan", "key_file": "id_board"}})))
    entry = rig.target("board")
    assert entry == SshEntry(name="board", host="board.lan", key_file=key.resolve(),
                                     known_hosts=Path("~/.ssh/known_hosts").expanduser())
    assert entry.port == 22 and entry.user == "root" and entry.host_keys == "verify"
    assert entry.reboot_command is None


def test_ssh_entry_in_full(tmp_path: Path) -> None:
    rig = config.load(write_rig(tmp_path, with_targets({"board": {
        "type": "ssh", "host": "10.0.0.7", "port": 2222, "user": "ci", "agent": True,
        "known_hosts": "hosts/known", "host_keys": "accept-new",
        "reboot_command": "systemctl reboot"}})))
    entry = rig.target("board")
    assert (entry.port, entry.user, entry.agent, entry.key_file) == (2222, "ci", True, None)
    assert entry.known_hosts == tmp_path / "hosts" / "known"
    assert entry.host_keys == "accept-new" and entry.reboot_command == "systemctl reboot"


@pytest.mark.parametrize(("entry", "message"), [
    ({"type": "ssh", "key_file": "k"}, "targets.b.host: got None, expected a host name"),
    ({"type": "ssh", "host": "h", "agent": True, "port": 0},
     "targets.b.port: got 0, expected a TCP port, 1 to 65535"),
    ({"type": "ssh", "host": "h", "agent": True, "port": "22"},
     "targets.b.port: got '22', expected an integer"),
    ({"type": "ssh", "host": "h"},
     "targets.b.key_file: got None, expected a private key file (or 'agent: true')"),
    ({"type": "ssh", "host": "h", "key_file": "absent"}, "targets.b.key_file: got 'absent',"
                                                           " expected an existing file"),
    ({"type": "ssh", "host": "h", "agent": True, "host_keys": "yes"},
     "targets.b.host_keys: got 'yes', expected verify or accept-new"),
    ({"type": "ssh", "host": "h", "agent": True, "password": "hunter2"},
     "targets.b.password: unknown key"),
    ({"type": "serial"}, "targets.b.type: got 'serial', expected ssh"),
    ({"host": "h"}, "targets.b.type: got None, expected ssh"),
])
def test_bad_ssh_entries_are_named(tmp_path: Path, entry: dict, message: str) -> None:
    assert message in load_error(tmp_path, with_targets({"b": entry}))


def test_qemu_entry_takes_only_its_type(tmp_path: Path) -> None:
    message = load_error(tmp_path, with_targets({"qemu": {"type": "qemu", "smp": 4}}))
    assert "targets.qemu.smp: unknown key" in message


def test_unknown_target_is_bad_input(tmp_path: Path) -> None:
    rig = config.load(write_rig(tmp_path, default_doc()))
    with pytest.raises(BadInput, match="no target named 'board' \\(targets: qemu\\)"):
        rig.target("board")


# -- a real SSH server ----------------------------------------------------------


class _Server(paramiko.ServerInterface):
    def __init__(self, client_key: paramiko.PKey) -> None:
        self.client_key = client_key
        self.exec_done = threading.Event()

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = username == "root" and key == self.client_key
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else \
            paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        def serve() -> None:
            done = subprocess.run(["sh", "-c", command.decode()], capture_output=True)
            channel.sendall(done.stdout + done.stderr)
            channel.send_exit_status(done.returncode)
            channel.close()
        threading.Thread(target=serve, daemon=True).start()
        return True


class SshServer:
    """Accepts connections on 127.0.0.1 in a thread, with one host key."""

    def __init__(self, host_key: paramiko.PKey, client_key: paramiko.PKey) -> None:
        self.host_key, self.client_key = host_key, client_key
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        self.transports: list[paramiko.Transport] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            transport = paramiko.Transport(sock)
            transport.add_server_key(self.host_key)
            transport.start_server(server=_Server(self.client_key))
            self.transports.append(transport)

    def drop_connections(self) -> None:
        for transport in self.transports:
            transport.close()

    def close(self) -> None:
        self.listener.close()
        self.drop_connections()


@pytest.fixture
def keys(tmp_path: Path) -> dict:
    made = {}
    for name in ("host", "client", "impostor"):
        path = tmp_path / name
        emulated.make_keys(tmp_path / f"{name}-dir", 1)  # exercises the key writer
        path.write_bytes((tmp_path / f"{name}-dir" / "id_ed25519").read_bytes())
        made[name] = (path, paramiko.Ed25519Key.from_private_key_file(str(path)))
    return made


@pytest.fixture
def server(keys: dict):
    running = SshServer(keys["host"][1], keys["client"][1])
    yield running
    running.close()


def entry_for(server: SshServer, keys: dict, known_hosts: Path, **fields) -> SshEntry:
    return SshEntry(name="t", host="127.0.0.1", port=server.port,
                            key_file=keys["client"][0], known_hosts=known_hosts, **fields)


def budget(command: float = 30.0) -> Budget:
    return Budget(config.TimeoutsConfig(boot=10.0, command=command))


def known(path: Path, port: int, key: paramiko.PKey) -> Path:
    path.write_text(f"[127.0.0.1]:{port} {key.get_name()} {key.get_base64()}\n")
    return path


def test_verify_connects_to_a_known_host_and_runs_commands(
        tmp_path: Path, server: SshServer, keys: dict) -> None:
    hosts = known(tmp_path / "known_hosts", server.port, keys["host"][1])
    with SshTarget(entry_for(server, keys, hosts), tmp_path / "log", budget()) as target:
        target.connect()
        result = target.run("echo out; echo err >&2; exit 3")
        assert (result.status, sorted(result.output.split())) == (3, ["err", "out"])
        assert target.capabilities.cpus >= 1 and target.capabilities.memory_mb > 0
        assert target.capabilities.exact_timing is False
        assert target.capabilities.can_reboot is False
    log = (tmp_path / "log" / "t.ssh.log").read_text()
    assert "$ echo out" in log
    secret = keys["client"][0].read_text()
    assert secret.splitlines()[1] not in log


def test_verify_refuses_an_unknown_host_and_names_its_key(
        tmp_path: Path, server: SshServer, keys: dict) -> None:
    hosts = tmp_path / "known_hosts"
    hosts.write_text("")
    target = SshTarget(entry_for(server, keys, hosts), tmp_path, budget(), Path("rig.yaml"))
    with pytest.raises(BadInput) as caught:
        target.connect()
    assert "rig.yaml: targets.t.known_hosts:" in caught.value.message
    assert fingerprint(keys["host"][1]) in caught.value.message
    assert hosts.read_text() == ""


def test_verify_needs_a_known_hosts_file(tmp_path: Path, server: SshServer, keys: dict) -> None:
    target = SshTarget(entry_for(server, keys, tmp_path / "absent"), tmp_path, budget())
    with pytest.raises(BadInput, match="does not exist"):
        target.connect()


def test_accept_new_adds_an_unknown_host(tmp_path: Path, server: SshServer, keys: dict) -> None:
    hosts = tmp_path / "new" / "known_hosts"
    entry = entry_for(server, keys, hosts, host_keys="accept-new")
    with SshTarget(entry, tmp_path, budget()) as target:
        target.connect()
    assert keys["host"][1].get_base64() in hosts.read_text()
    hosts.write_text("# kept\n")  # the user's own lines survive an addition
    with SshTarget(entry, tmp_path, budget()) as target:
        target.connect()
    lines = hosts.read_text().splitlines()
    assert lines[0] == "# kept" and lines[1].startswith(f"[127.0.0.1]:{server.port} ssh-ed25519 ")
    with SshTarget(dataclass_replace(entry, host_keys="verify"), tmp_path, budget()) as again:
        again.connect()  # now known


def dataclass_replace(entry: SshEntry, **fields) -> SshEntry:
    return dataclasses.replace(entry, **fields)


@pytest.mark.parametrize("policy", ["verify", "accept-new"])
def test_a_changed_host_key_is_always_refused(
        tmp_path: Path, server: SshServer, keys: dict, policy: str) -> None:
    hosts = known(tmp_path / "known_hosts", server.port, keys["impostor"][1])
    before = hosts.read_text()
    target = SshTarget(entry_for(server, keys, hosts, host_keys=policy), tmp_path, budget())
    with pytest.raises(InfraError, match="host key of root@127.0.0.1:.* changed"):
        target.connect()
    assert hosts.read_text() == before


def test_a_refused_key_is_bad_input(tmp_path: Path, server: SshServer, keys: dict) -> None:
    hosts = known(tmp_path / "known_hosts", server.port, keys["host"][1])
    entry = dataclass_replace(entry_for(server, keys, hosts), key_file=keys["impostor"][0])
    with pytest.raises(BadInput, match=f"refused key_file {keys['impostor'][0]}"):
        SshTarget(entry, tmp_path, budget()).connect()


def test_a_key_with_a_passphrase_is_named_so(tmp_path: Path, server: SshServer,
                                            keys: dict) -> None:
    hosts = known(tmp_path / "known_hosts", server.port, keys["host"][1])
    locked = tmp_path / "locked"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    locked.write_bytes(Ed25519PrivateKey.generate().private_bytes(  # as ssh-keygen -N writes
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.BestAvailableEncryption(b"secret")))
    entry = dataclass_replace(entry_for(server, keys, hosts), key_file=locked)
    with pytest.raises(BadInput, match=f"key_file: {locked} is protected by a passphrase"):
        SshTarget(entry, tmp_path, budget()).connect()


def test_the_kernel_log_is_in_the_session_log_once(
        tmp_path: Path, server: SshServer, keys: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "dmesg").write_text("#!/bin/sh\necho rig-kernel-log-line\n")
    (tools / "dmesg").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")  # the server's sh finds it
    hosts = known(tmp_path / "known_hosts", server.port, keys["host"][1])
    with SshTarget(entry_for(server, keys, hosts), tmp_path / "log", budget()) as target:
        target.connect()
    assert (tmp_path / "log" / "t.ssh.log").read_text().count("rig-kernel-log-line") == 1


def test_a_command_timeout_is_an_infrastructure_error(
        tmp_path: Path, server: SshServer, keys: dict) -> None:
    hosts = known(tmp_path / "known_hosts", server.port, keys["host"][1])
    with SshTarget(entry_for(server, keys, hosts), tmp_path, budget(command=1.0)) as target:
        target.connect()
        with pytest.raises(InfraError, match="timed out after 1s"):
            target.run("sleep 5")
        assert not target.running


def test_a_lost_connection_is_an_infrastructure_error(
        tmp_path: Path, server: SshServer, keys: dict) -> None:
    hosts = known(tmp_path / "known_hosts", server.port, keys["host"][1])
    with SshTarget(entry_for(server, keys, hosts), tmp_path, budget()) as target:
        target.connect()
        threading.Timer(1.0, server.drop_connections).start()
        with pytest.raises(InfraError, match="connection to root@127.0.0.1:.* lost"):
            target.run("sleep 5")


def test_nothing_listening_is_an_infrastructure_error(tmp_path: Path, keys: dict) -> None:
    hosts = tmp_path / "known_hosts"
    hosts.write_text("")
    entry = SshEntry(name="t", host="127.0.0.1", port=emulated.free_port(),
                             key_file=keys["client"][0], known_hosts=hosts)
    with pytest.raises(InfraError, match="cannot connect"):
        SshTarget(entry, tmp_path, budget()).connect()


def test_latency_adapts_to_a_target_without_exact_timing() -> None:
    suite = Latency(LatencyConfig(mode="icount", boots=3, windows=200))
    board = Capabilities(exact_timing=False, cpus=4, memory_mb=8192, can_reboot=False)
    assert suite.needs().unmet(board) is not None
    adapted = suite.adapt(board)
    assert (adapted.cfg.mode, adapted.cfg.boots, adapted.cfg.windows) == ("wallclock", 5, 200)
    assert adapted.needs().unmet(board) is None
    assert suite.cfg.mode == "icount"  # the rig.yaml suite is left as it was


def test_host_key_file_is_dropbear_format(tmp_path: Path) -> None:
    made = emulated.make_keys(tmp_path, 2222)
    line = made.known_hosts.read_text().split()
    assert line[0] == "[127.0.0.1]:2222" and line[1] == "ssh-ed25519"
    entries = {e.name: e for e in _read(made.cpio)}
    blob = entries[emulated.HOST_KEY].data
    # string "ssh-ed25519", string(32-byte seed || 32-byte public key)
    assert blob[:4] == b"\0\0\0\x0b" and blob[4:15] == b"ssh-ed25519"
    assert blob[15:19] == b"\0\0\0\x40" and len(blob) == 19 + 64
    public = paramiko.Ed25519Key(data=paramiko.Message(
        base64.b64decode(line[2])).asbytes())
    assert blob[19 + 32:] == public.asbytes()[-32:]
    assert entries[emulated.HOST_KEY].mode & 0o777 == 0o600
    assert made.client_key.stat().st_mode & 0o777 == 0o600
    client = paramiko.Ed25519Key.from_private_key_file(str(made.client_key))
    authorized = entries["root/.ssh/authorized_keys"].data.decode()
    assert client.get_base64() in authorized


def _read(cpio: Path) -> list:
    return list(read_cpio(cpio.read_bytes()).values())


def test_target_yaml_loads_as_a_target(tmp_path: Path) -> None:
    made = emulated.make_keys(tmp_path / "k", 4242)
    entry = SshEntry(name="emu", host="127.0.0.1", port=4242,
                             key_file=made.client_key, known_hosts=made.known_hosts)
    doc = default_doc()
    doc.update(yaml.safe_load(emulated.entry_yaml(entry)))
    rig = config.load(write_rig(tmp_path, doc))
    assert rig.target("emu") == entry
