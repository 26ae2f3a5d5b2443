"""`ovchat serve --ray` on a local Ray opens nothing to the network that takes a peer without this
run's credential (issue 32): Ray Serve binds each replica's gRPC server to [::], and
server/ray_tls.py turns on Ray's mutual TLS with a CA and certificate made at start-up.

The fast tests check the credential itself; the `ray` test starts the command as a user would,
lists the listening sockets of every process it started, and knocks on them from 127.0.0.1."""

import ipaddress
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

cryptography = pytest.importorskip("cryptography", reason="the ray extra is not installed: pip install 'ovchat[ray]'")

from ovchat.server import ray_tls  # noqa: E402


@pytest.fixture
def clean_env(monkeypatch):
    for key in ray_tls.ENV:
        monkeypatch.delenv(key, raising=False)


def test_the_credential_sits_in_a_private_folder_named_by_rays_variables_and_goes_at_remove(clean_env):
    tls = ray_tls.start()
    try:
        folder = tls.folder
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        assert sorted(os.listdir(folder)) == ["ca.pem", "cert.pem", "key.pem"]  # the CA's key is not kept
        assert {stat.S_IMODE(os.stat(os.path.join(folder, name)).st_mode) for name in os.listdir(folder)} == {0o600}
        assert os.environ["RAY_USE_TLS"] == "1"
        assert [os.path.dirname(os.environ[key]) for key in ray_tls.ENV[1:]] == [folder] * 3
    finally:
        tls.remove()
    assert not os.path.exists(folder)
    assert not set(ray_tls.ENV) & set(os.environ)
    tls.remove()  # twice: nothing more


def test_the_certificate_is_signed_by_its_own_ca_for_the_loopback_at_both_ends():
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    cert_pem, _, ca_pem = ray_tls.make_credential()
    cert, ca = x509.load_pem_x509_certificate(cert_pem), x509.load_pem_x509_certificate(ca_pem)
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == {
        ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    other_cert, _, other_ca = ray_tls.make_credential()
    with pytest.raises(Exception):  # another run's certificate is not this CA's
        x509.load_pem_x509_certificate(other_cert).verify_directly_issued_by(ca)


def test_a_user_who_set_rays_tls_keeps_it(clean_env, monkeypatch):
    monkeypatch.setenv("RAY_USE_TLS", "0")
    tls = ray_tls.start()
    assert tls.folder is None and os.environ["RAY_USE_TLS"] == "0" and "RAY_TLS_CA_CERT" not in os.environ


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


def listening(processes) -> list[tuple[object, str, int]]:
    import psutil
    found = []
    for process in processes:
        try:
            found += [(process, c.laddr.ip, c.laddr.port) for c in process.net_connections(kind="inet")
                      if c.status == psutil.CONN_LISTEN]
        except psutil.NoSuchProcess:
            pass
    return found


def grpc_status(port: int, credentials=None):
    """The status of a call to a method no server has, from 127.0.0.1: UNAVAILABLE when the
    connection itself is refused; UNIMPLEMENTED (or UNAUTHENTICATED) once a peer is let in."""
    import grpc
    target = f"127.0.0.1:{port}"
    channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
    with channel:
        try:
            channel.unary_unary("/ovchat.test.Probe/Knock")(b"", timeout=20)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


@pytest.mark.ray
def test_serve_ray_listens_beyond_the_loopback_only_behind_this_runs_tls(tiny_phi3_dir, tmp_path):
    pytest.importorskip("ray.serve", reason="the ray extra is not installed: pip install 'ovchat[ray]'")
    grpc = pytest.importorskip("grpc")
    psutil = pytest.importorskip("psutil")
    from test_ray_cli import CLI
    from test_ray_serve import free_port, wait_until
    from server_harness import request

    port = free_port()
    log_path = tmp_path / "serve.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-c", CLI, "serve", "--ray", "-m", str(tiny_phi3_dir), "--port",
                                    str(port), "--replicas", "1", "--log-level", "warning"],
                                   stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    started = []
    try:
        def healthy():
            """the app answers /health"""
            assert process.poll() is None, log_path.read_text()[-3000:]
            try:
                return request(f"http://127.0.0.1:{port}", "GET", "/health", timeout_s=5)[0] == 200
            except OSError:
                return False

        wait_until(healthy, timeout_s=240, every_s=0.5)
        started = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
        sockets = listening(started)
        replica = [(p, ip, port) for p, ip, port in sockets if "ServeReplica" in " ".join(p.cmdline())]
        outward = [(p, ip, port) for p, ip, port in sockets if not is_loopback(ip)]
        print(f"\n{len(sockets)} listening sockets; beyond the loopback: {[(ip, port) for _, ip, port in outward]}")
        assert replica, sockets  # the replica's gRPC servers: the one Ray binds to [::], and its worker's
        knocked_on = outward + [socket for socket in replica if socket not in outward]
        for _, ip, knocked in knocked_on:
            assert grpc_status(knocked) == grpc.StatusCode.UNAVAILABLE, (ip, knocked, "plaintext let in")

        environ = replica[0][0].environ()  # as Ray's processes got it (ovchat's own /proc shows its start's)
        folder = os.path.dirname(environ["RAY_TLS_CA_CERT"])
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700

        def read(key):
            with open(environ[key], "rb") as file:
                return file.read()

        trusting = grpc.ssl_channel_credentials(root_certificates=read("RAY_TLS_CA_CERT"))
        holding = grpc.ssl_channel_credentials(read("RAY_TLS_CA_CERT"), read("RAY_TLS_SERVER_KEY"),
                                               read("RAY_TLS_SERVER_CERT"))
        for _, ip, knocked in knocked_on:
            assert grpc_status(knocked, trusting) == grpc.StatusCode.UNAVAILABLE, (ip, knocked, "no client certificate")
            assert grpc_status(knocked, holding) != grpc.StatusCode.UNAVAILABLE, (ip, knocked, "the credential refused")

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0, log_path.read_text()[-3000:]
        assert not os.path.exists(folder)  # the credential goes with the run
        wait_until(lambda: not [p for p in started[1:] if p.is_running() and p.status() != psutil.STATUS_ZOMBIE],
                   timeout_s=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        for leftover in started[1:]:  # a failed test still leaves no Ray process behind
            if leftover.is_running():
                leftover.kill()


def ray_containers(manifest: dict) -> list[tuple[dict, dict]]:
    """(pod spec, Ray container) of the head and of every worker group."""
    cluster = manifest["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"]["template"]["spec"]]
    pods += [group["template"]["spec"] for group in cluster["workerGroupSpecs"]]
    return [(pod, container) for pod in pods for container in pod["containers"]]


def test_the_kuberay_example_gives_every_ray_container_tls_and_no_container_but_the_init_the_ca_key():
    import yaml

    manifest = yaml.safe_load((Path(__file__).resolve().parents[1] / "deploy" / "kuberay.yaml").read_text())
    for pod, container in ray_containers(manifest):
        env = {item["name"]: item.get("value") for item in container["env"]}
        assert env["RAY_USE_TLS"] == "1", container["name"]
        mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
        for key in ray_tls.ENV[1:]:
            assert mounts.get(os.path.dirname(env[key])) == "ray-tls", (container["name"], key)
        assert "ray-ca" not in mounts.values()  # the CA's key: only the init container signs with it
        init = {mount["name"] for c in pod["initContainers"] for mount in c["volumeMounts"]}
        assert {"ray-ca", "ray-gencert", "ray-tls"} <= init
    serve_config = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    assert serve_config["applications"][0]["import_path"] == "ovchat.server.ray_app:app_builder"


def test_the_kuberay_init_script_signs_a_pod_certificate_with_the_cluster_ca(tmp_path):
    import shutil

    from cryptography import x509

    if not shutil.which("openssl"):
        pytest.skip("no openssl on this machine")
    ca_dir, out = tmp_path / "ca", tmp_path / "tls"
    ca_dir.mkdir(), out.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "30", "-subj", "/CN=test CA", "-keyout", str(ca_dir / "ca.key"), "-out", str(ca_dir / "ca.crt")],
                   check=True, capture_output=True)
    script = Path(__file__).resolve().parents[1] / "deploy" / "kuberay-gencert.sh"
    env = {**os.environ, "POD_IP": "10.1.2.3", "POD_NAMESPACE": "ml", "OUT": str(out), "CA_DIR": str(ca_dir)}
    subprocess.run(["sh", str(script)], env=env, check=True, capture_output=True)
    assert sorted(os.listdir(out)) == ["ca.crt", "tls.crt", "tls.key"]
    assert stat.S_IMODE(os.stat(out / "tls.key").st_mode) == 0o400
    cert = x509.load_pem_x509_certificate((out / "tls.crt").read_bytes())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes()))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"10.1.2.3", "127.0.0.1"}
    assert "*.ml.svc.cluster.local" in names.get_values_for_type(x509.DNSName)
