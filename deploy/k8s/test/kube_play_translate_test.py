#!/usr/bin/python3
"""Tests kube_play_translate.py on the real manifests, rendered by `kubectl kustomize`.

Run by Bazel as //deploy/k8s:kube_play_translate_test ("local": kustomize needs the
source tree, as manifests_test does). Writes one JUnit testcase per test method to
$XML_OUTPUT_FILE, so tools/test.sh counts each.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET

import yaml

HERE = os.path.dirname(os.path.realpath(__file__))  # deploy/k8s/test in the source tree
K8S = os.path.dirname(HERE)
TRANSLATE = os.path.join(HERE, "kube_play_translate.py")

OFFKEYD_PORTS = {"offkeyd:grpc": 21443, "offkeyd:admin": 21444, "offkeyd:metrics": 21090}
NGINX_PORTS = {"nginx:https": 22443, "nginx:health": 22080}


def render(path):
    return subprocess.run(["kubectl", "kustomize", path], check=True, capture_output=True,
                          text=True).stdout


def port_flags(ports):
    return [f for k, v in ports.items() for f in ("--port", f"{k}={v}")]


def load_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def configmaps(out):
    """The ConfigMaps written for --configmap, one per file."""
    found = []
    for name in sorted(os.listdir(os.path.join(out, "configmaps"))):
        docs = load_all(os.path.join(out, "configmaps", name))
        assert len(docs) == 1 and name == docs[0]["metadata"]["name"] + ".yaml", name
        found += docs
    return found


class TranslateTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        cls.dev_yaml = os.path.join(cls.tmp, "dev.yaml")
        cls.example_yaml = os.path.join(cls.tmp, "example.yaml")
        with open(cls.dev_yaml, "w", encoding="utf-8") as f:
            f.write(render(os.path.join(K8S, "dev")))
        with open(cls.example_yaml, "w", encoding="utf-8") as f:
            f.write(render(os.path.join(K8S, "examples", "nginx-terminator")))
        # What the operator would put in the Secrets: one distinct line per key.
        cls.secrets = os.path.join(cls.tmp, "secrets")
        for secret, keys in {"offkeyd-tls": ["tls.crt", "tls.key", "ca.crt"],
                             "offkeyd-hsm-pin": ["pin", "so-pin"],
                             "offkey-client-tls": ["tls.crt", "tls.key", "ca.crt"]}.items():
            os.makedirs(os.path.join(cls.secrets, secret))
            for key in keys:
                with open(os.path.join(cls.secrets, secret, key), "w", encoding="utf-8") as f:
                    f.write(f"{secret}/{key}\n")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def run_translate(self, rendered, *args):
        out = tempfile.mkdtemp(dir=self.tmp)
        result = subprocess.run(["/usr/bin/python3", TRANSLATE, "--out", out, *args, rendered],
                                capture_output=True, text=True)
        return out, result

    def translate_dev(self):
        out, result = self.run_translate(
            self.dev_yaml, "--secrets", self.secrets, "--image",
            "offkeyd=localhost/offkeyd:dev", *port_flags(OFFKEYD_PORTS))
        self.assertEqual(result.returncode, 0, result.stderr)
        return out

    def translate_example(self):
        out, result = self.run_translate(
            self.example_yaml, "--secrets", self.secrets, "--services", self.dev_yaml,
            "--image", "offkey-nginx-terminator=localhost/offkey-nginx-terminator:dev",
            *port_flags(NGINX_PORTS), *port_flags(OFFKEYD_PORTS))
        self.assertEqual(result.returncode, 0, result.stderr)
        return out

    def assert_pod_translated(self, deployment, ports):
        spec = deployment["spec"]["template"]["spec"]
        self.assertEqual(deployment["spec"]["replicas"], 1)
        self.assertIs(spec["hostNetwork"], True)
        for c in spec.get("initContainers", []) + spec["containers"]:
            self.assertTrue(c["image"].startswith("localhost/"), c["image"])
            self.assertEqual(c["imagePullPolicy"], "Never")
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                self.assertNotIn(probe, c)
            for p in c.get("ports", []):
                want = ports[f"{c['name']}:{p['name']}"]
                self.assertEqual(p["containerPort"], want)
                self.assertNotIn("hostPort", p)  # podman refuses it in the host network
        for v in spec["volumes"]:
            self.assertNotIn("secret", v, "a Secret volume is left")
        return spec

    def test_dev_overlay_plays_only_kinds_podman_knows(self):
        out = self.translate_dev()
        self.assertEqual([d["kind"] for d in load_all(os.path.join(out, "play.yaml"))],
                         ["Deployment"])
        self.assertEqual([d["kind"] for d in load_all(os.path.join(out, "claims.yaml"))],
                         ["PersistentVolumeClaim"])
        self.assertEqual({d["kind"] for d in configmaps(out)},
                         {"ConfigMap"})

    def test_dev_overlay_pod(self):
        out = self.translate_dev()
        play = load_all(os.path.join(out, "play.yaml"))
        deployment = next(d for d in play if d["kind"] == "Deployment")
        spec = self.assert_pod_translated(deployment, OFFKEYD_PORTS)
        hostnames = spec["hostAliases"][0]["hostnames"]
        self.assertEqual(spec["hostAliases"][0]["ip"], "127.0.0.1")
        self.assertIn("offkeyd-headless.offkey.svc.cluster.local", hostnames)
        self.assertIn("offkeyd.offkey.svc", hostnames)
        # podman gives hostAliases only to the infra container in the host network.
        self.assertIn({"name": "kube-play-hosts", "mountPath": "/etc/hosts", "readOnly": True},
                      spec["containers"][0]["volumeMounts"])
        hosts = next(v for v in spec["volumes"] if v["name"] == "kube-play-hosts")
        with open(hosts["hostPath"]["path"], encoding="utf-8") as f:
            lines = f.read().splitlines()
        self.assertIn("127.0.0.1\toffkeyd-headless.offkey.svc.cluster.local", lines)
        self.assertIn("127.0.0.1\tlocalhost", lines)
        # The init container is a Pod of its own, with the same settings and only the
        # volumes it mounts.
        self.assertNotIn("initContainers", spec)
        self.assertEqual(os.listdir(os.path.join(out, "init")),
                         ["0-offkeyd-init-softhsm-init.yaml"])
        [init] = load_all(os.path.join(out, "init", "0-offkeyd-init-softhsm-init.yaml"))
        self.assertEqual((init["kind"], init["metadata"]["name"]),
                         ("Pod", "offkeyd-init-softhsm-init"))
        self.assertEqual(init["spec"]["restartPolicy"], "Never")
        self.assertIs(init["spec"]["hostNetwork"], True)
        self.assertEqual(init["spec"]["securityContext"], spec["securityContext"])
        [c] = init["spec"]["containers"]
        self.assertIn("softhsm2-util --init-token", " ".join(c["command"]))
        self.assertEqual(c["image"], "localhost/offkeyd:dev")
        self.assertEqual(sorted(v["name"] for v in init["spec"]["volumes"]),
                         ["hsm-init-pins", "kube-play-hosts", "softhsm-conf", "softhsm-tokens"])
        # Each pod's emptyDir has a volume name of its own.
        self.assertEqual(next(v for v in spec["volumes"] if "emptyDir" in v)["name"],
                         "offkeyd-pod-0-tmp")
        self.assertIn({"name": "offkeyd-pod-0-tmp", "mountPath": "/tmp"},
                      spec["containers"][0]["volumeMounts"])
        claim = load_all(os.path.join(out, "claims.yaml"))[0]
        self.assertEqual(claim["metadata"]["annotations"],
                         {"volume.podman.io/uid": "65532", "volume.podman.io/gid": "65532"})

    def test_dev_overlay_secret_volumes_hold_only_their_items(self):
        out = self.translate_dev()
        deployment = next(d for d in load_all(os.path.join(out, "play.yaml"))
                          if d["kind"] == "Deployment")
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        expected = {"tls": ("offkeyd-tls", ["ca.crt", "tls.crt", "tls.key"]),
                    "hsm-pin": ("offkeyd-hsm-pin", ["pin"]),
                    "hsm-init-pins": ("offkeyd-hsm-pin", ["pin", "so-pin"])}
        for name, (secret, files) in expected.items():
            path = volumes[name]["hostPath"]["path"]
            self.assertEqual(volumes[name]["hostPath"]["type"], "Directory")
            self.assertTrue(path.startswith(out), path)
            self.assertEqual(sorted(os.listdir(path)), files, name)
            for f in files:
                with open(os.path.join(path, f), encoding="utf-8") as fh:
                    self.assertEqual(fh.read(), f"{secret}/{f}\n")
                st = os.stat(os.path.join(path, f))
                self.assertEqual(st.st_mode & 0o777, 0o440, f"{name}/{f}")
                if os.geteuid() == 0:
                    self.assertEqual(st.st_gid, 65532, f"{name}/{f}: fsGroup")

    def test_dev_overlay_listens_on_the_chosen_ports(self):
        out = self.translate_dev()
        cms = {d["metadata"]["name"]: d for d in configmaps(out)}
        config = cms["offkeyd-config"]["data"]["offkeyd.textproto"]
        addresses = dict(re.findall(r'^(\w+_address): "([^"]*)"', config, re.M))
        self.assertEqual(addresses, {
            "listen_address": f"127.0.0.1:{OFFKEYD_PORTS['offkeyd:grpc']}",
            "admin_listen_address": f"127.0.0.1:{OFFKEYD_PORTS['offkeyd:admin']}",
            "metrics_address": f"127.0.0.1:{OFFKEYD_PORTS['offkeyd:metrics']}"})
        # Nothing else in the file changed.
        original = next(d for d in load_all(self.dev_yaml)
                        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "offkeyd-config")
        changed = [(a, b) for a, b in zip(original["data"]["offkeyd.textproto"].splitlines(),
                                          config.splitlines()) if a != b]
        self.assertEqual(len(changed), 3, changed)
        softhsm = next(d for n, d in cms.items() if n.startswith("softhsm2-conf"))
        self.assertIn("directories.tokendir = /var/lib/softhsm-tokens/",
                      softhsm["data"]["softhsm2.conf"])

    def test_dev_overlay_probes_become_checks(self):
        out = self.translate_dev()
        with open(os.path.join(out, "checks.tsv"), encoding="utf-8") as f:
            checks = [line.rstrip("\n").split("\t") for line in f]
        metrics = OFFKEYD_PORTS["offkeyd:metrics"]
        self.assertIn(["readinessProbe", "offkeyd-pod-0/offkeyd",
                       f"http://127.0.0.1:{metrics}/readyz"], checks)
        self.assertIn(["startupProbe", "offkeyd-pod-0/offkeyd",
                       f"http://127.0.0.1:{metrics}/healthz"], checks)

    def test_example(self):
        out = self.translate_example()
        play = load_all(os.path.join(out, "play.yaml"))
        self.assertEqual([d["kind"] for d in play], ["Deployment"])
        self.assertEqual(load_all(os.path.join(out, "claims.yaml")), [])
        original = next(d for d in load_all(self.example_yaml) if d["kind"] == "Deployment")
        self.assertEqual(original["spec"]["replicas"], 2)
        spec = self.assert_pod_translated(play[0], NGINX_PORTS)
        self.assertIn("offkeyd-headless.offkey.svc.cluster.local",
                      spec["hostAliases"][0]["hostnames"])
        volumes = {v["name"]: v for v in spec["volumes"]}
        self.assertEqual(sorted(os.listdir(volumes["client-tls"]["hostPath"]["path"])),
                         ["ca.crt", "tls.crt", "tls.key"])
        with open(os.path.join(out, "translation.txt"), encoding="utf-8") as f:
            notes = f.read()
        self.assertIn("Certificate offkey-client-tls: dropped", notes)
        self.assertIn("replicas 2 -> 1", notes)

    def test_example_configuration_follows_ports_and_services(self):
        out = self.translate_example()
        cms = {d["metadata"]["name"].rsplit("-", 1)[0]: d["data"]
               for d in configmaps(out)}
        nginx = cms["nginx-conf"]["nginx.conf"]
        self.assertEqual(re.findall(r"^\s*listen\s+([^;]*);", nginx, re.M),
                         [f"127.0.0.1:{NGINX_PORTS['nginx:https']} ssl",
                          f"127.0.0.1:{NGINX_PORTS['nginx:health']}"])
        cnf = cms["offkey-openssl-cnf"]["openssl.cnf"]
        self.assertIn("endpoint = dns:///offkeyd-headless.offkey.svc.cluster.local:"
                      f"{OFFKEYD_PORTS['offkeyd:grpc']}\n", cnf)
        self.assertIn("server_name = offkeyd.offkey.svc\n", cnf)  # the certificate's name
        # The key reference and the chain pass through unchanged.
        original = {d["metadata"]["name"].rsplit("-", 1)[0]: d["data"]
                    for d in load_all(self.example_yaml) if d["kind"] == "ConfigMap"}
        self.assertEqual(cms["www-keyref"], original["www-keyref"])

    def test_a_container_port_without_a_host_port_is_an_error(self):
        ports = dict(OFFKEYD_PORTS)
        del ports["offkeyd:admin"]
        _, result = self.run_translate(self.dev_yaml, "--secrets", self.secrets,
                                       *port_flags(ports))
        self.assertEqual(result.returncode, 2)
        self.assertIn("--port offkeyd:admin=PORT", result.stderr)

    def test_a_port_flag_that_matches_nothing_is_an_error(self):
        _, result = self.run_translate(self.dev_yaml, "--secrets", self.secrets,
                                       *port_flags(OFFKEYD_PORTS), "--port", "offkeyd:grcp=1")
        self.assertEqual(result.returncode, 2)
        self.assertIn("offkeyd:grcp: no such container port", result.stderr)

    def test_a_missing_secret_key_is_an_error(self):
        partial = os.path.join(self.tmp, "partial")
        shutil.copytree(self.secrets, partial)
        os.remove(os.path.join(partial, "offkeyd-hsm-pin", "so-pin"))
        _, result = self.run_translate(self.dev_yaml, "--secrets", partial,
                                       *port_flags(OFFKEYD_PORTS))
        self.assertEqual(result.returncode, 2)
        self.assertIn("Secret offkeyd-hsm-pin has no key so-pin", result.stderr)

    def test_an_unknown_kind_is_an_error(self):
        path = os.path.join(self.tmp, "with-ingress.yaml")
        with open(path, "w", encoding="utf-8") as f:
            with open(self.dev_yaml, encoding="utf-8") as rendered:
                f.write(rendered.read())
            f.write("---\napiVersion: networking.k8s.io/v1\nkind: Ingress\n"
                    "metadata:\n  name: www\n")
        _, result = self.run_translate(path, "--secrets", self.secrets,
                                       *port_flags(OFFKEYD_PORTS))
        self.assertEqual(result.returncode, 2)
        self.assertIn("Ingress www: no translation for this kind", result.stderr)


class JUnitResult(unittest.TextTestResult):
    """Also records each test's outcome for $XML_OUTPUT_FILE."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cases = []

    def addSuccess(self, test):
        super().addSuccess(test)
        self.cases.append((test.id(), None))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.cases.append((test.id(), self.failures[-1][1]))

    def addError(self, test, err):
        super().addError(test, err)
        self.cases.append((test.id(), self.errors[-1][1]))


def main():
    runner = unittest.TextTestRunner(resultclass=JUnitResult, verbosity=2)
    result = runner.run(unittest.defaultTestLoader.loadTestsFromTestCase(TranslateTest))
    xml_path = os.environ.get("XML_OUTPUT_FILE")
    if xml_path:
        suite = ET.Element("testsuite", name="kube_play_translate_test",
                           tests=str(len(result.cases)))
        for name, failure in result.cases:
            case = ET.SubElement(suite, "testcase", name=name.rsplit(".", 1)[-1],
                                 classname="TranslateTest")
            if failure is not None:
                ET.SubElement(case, "failure", message="failed").text = failure
        root = ET.Element("testsuites")
        root.append(suite)
        ET.ElementTree(root).write(xml_path, encoding="utf-8", xml_declaration=True)
    return 0 if result.wasSuccessful() and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
