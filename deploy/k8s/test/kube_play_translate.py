#!/usr/bin/python3
"""Translates rendered Kubernetes manifests into what `podman kube play` (4.3) can run.

    kube_play_translate.py --out DIR [--port CONTAINER:PORT_NAME=HOST_PORT ...]
        [--image NAME=REFERENCE ...] [--secrets DIR] [--services FILE ...] RENDERED.yaml

RENDERED.yaml is `kubectl kustomize` output. podman 4.3 plays Pods, Deployments and
PersistentVolumeClaims, and takes ConfigMaps with --configmap; everything else a cluster
would do is translated here, one rule per part, on a single host with no cluster:

  Deployment, Pod   played, with:
    replicas        set to 1 (podman plays one pod per Deployment; more would bind the
                    same host ports).
    network         hostNetwork: true, so that pods reach each other on 127.0.0.1 as
                    they would through Services, and no bridge network is needed.
    ports           every container port must have a --port: the port it is on the
                    host. The declarations go (podman maps every declared port, which it
                    refuses in the host network); the addresses in the ConfigMaps the
                    pod mounts follow (below) and bind 127.0.0.1 only.
    probes          removed (podman would run them as health checks against names and
                    ports of the cluster). Each becomes a line of checks.tsv (its kind,
                    the container, the URL on 127.0.0.1) that the caller polls instead.
    images          --image NAME=REFERENCE replaces an image whose name (tag ignored) is
                    NAME; imagePullPolicy becomes Never: no registry is ever asked.
    Secret volumes  a hostPath directory under DIR/secrets/POD/VOLUME, filled from
                    --secrets DIR/SECRET_NAME/KEY files as the kubelet projects a Secret:
                    only `items` when listed, mode defaultMode, group fsGroup.
    hostAliases     every Service's DNS names (NAME, NAME.NS, NAME.NS.svc,
                    NAME.NS.svc.cluster.local) point at 127.0.0.1, also in a hosts file
                    DIR/hosts/POD mounted on each container's /etc/hosts (podman 4.3
                    gives hostAliases only to the infra container in the host network).
    init containers each become a Pod of their own, DIR/init/N-NAME.yaml, with the
                    pod's settings and the volumes they mount (restartPolicy: Never),
                    which the caller runs to completion, in order, before playing the
                    pod: podman 4.3's own init containers wait 20 s for conmon here and
                    then fail now and then to be removed.
    emptyDir        renamed POD-NAME: podman 4.3 makes a volume called as the pod's
                    volume (on disk, also for medium: Memory), which pods with a volume
                    of the same name would share.
  PersistentVolumeClaim  written to claims.yaml, to play once: podman refuses a claim
                    whose volume exists, where `kubectl apply` keeps it. Its volume's
                    owner is the pod's runAsUser and fsGroup (volume.podman.io/uid and
                    gid annotations: podman has no fsGroup, and a new volume is root's).
  ConfigMap         written to configmaps/NAME.yaml, one each, for --configmap (podman
                    reads one ConfigMap from each file), with the addresses
                    rewritten for the host network: "0.0.0.0:P" and nginx's "listen P"
                    for a container port P of a pod that mounts it become
                    "127.0.0.1:HOST_PORT", and "SERVICE_DNS_NAME:SERVICE_PORT" becomes
                    "SERVICE_DNS_NAME:HOST_PORT" of the port the Service targets.
  Service           not played: hostAliases and the address rewrites above. Services in
                    --services FILEs (another rendering, e.g. the server the example
                    calls) count too; their targets' ports resolve through the same
                    --port flags.
  Namespace, ServiceAccount, NetworkPolicy, PodDisruptionBudget,
  HorizontalPodAutoscaler, cert-manager Certificate
                    dropped: one host has no namespaces, API tokens, network policy,
                    evictions, autoscaler or cert-manager. The caller makes the
                    Certificates' Secrets (--secrets).
Any other kind is an error, so that a new object in the manifests is translated on
purpose, not lost. translation.txt in DIR lists every change made.

Writes DIR/play.yaml, DIR/claims.yaml, DIR/init/, DIR/configmaps/, DIR/checks.tsv,
DIR/translation.txt, DIR/hosts/ and DIR/secrets/. Exit status 2, with a message, on
input it cannot translate.
"""

import argparse
import copy
import os
import re
import shutil
import sys

import yaml

DROPPED = {
    "Namespace": "one host has no namespaces",
    "ServiceAccount": "no Kubernetes API to authenticate to",
    "NetworkPolicy": "no network policy on one host",
    "PodDisruptionBudget": "no evictions on one host",
    "HorizontalPodAutoscaler": "one replica, no autoscaler",
    "Certificate": "no cert-manager: the caller makes its Secret",
}
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


class BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (the ConfigMaps' files) as readable literal blocks."""


BlockDumper.add_representer(
    str, lambda dumper, text: dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


class TranslateError(Exception):
    """Input the translation cannot honour; the message says what to change."""


def load_documents(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def pod_spec(obj):
    return obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]


def pod_labels(obj):
    meta = obj["metadata"] if obj["kind"] == "Pod" else obj["spec"]["template"]["metadata"]
    return meta.get("labels", {})


def pod_name(obj):
    """The pod podman 4.3 creates: a Deployment's pod is NAME-pod-0; its containers are
    POD-CONTAINER."""
    name = obj["metadata"]["name"]
    return name if obj["kind"] == "Pod" else name + "-pod-0"


def all_containers(spec):
    return spec.get("initContainers", []) + spec.get("containers", [])


def service_dns_names(service):
    name = service["metadata"]["name"]
    namespace = service["metadata"].get("namespace", "default")
    return [
        f"{name}.{namespace}.svc.cluster.local",
        f"{name}.{namespace}.svc",
        f"{name}.{namespace}",
        name,
    ]


class Translator:
    def __init__(self, ports, images, secrets_dir, out_dir):
        self.ports = ports  # "container:port_name" -> host port
        self.used_ports = set()
        self.images = images  # image name without tag -> reference
        self.secrets_dir = secrets_dir
        self.out_dir = out_dir
        self.notes = []
        self.checks = []

    def note(self, text):
        self.notes.append(text)

    def host_port(self, container, port):
        key = f"{container['name']}:{port.get('name', port['containerPort'])}"
        if key not in self.ports:
            raise TranslateError(
                f"container port {key} ({port['containerPort']}) has no host port: "
                f"give --port {key}=PORT")
        self.used_ports.add(key)
        return self.ports[key]

    def container_port_map(self, workload):
        """containerPort -> host port, and port name -> host port, for one pod."""
        by_number, by_name = {}, {}
        for c in pod_spec(workload).get("containers", []):
            for p in c.get("ports", []):
                hp = self.host_port(c, p)
                by_number[p["containerPort"]] = hp
                if "name" in p:
                    by_name[p["name"]] = hp
        return by_number, by_name

    # --- Services ----------------------------------------------------------------------

    def service_targets(self, services, workloads):
        """(dns names, service port, host port) for every port of every Service."""
        targets = []
        for svc in services:
            selector = svc["spec"].get("selector", {})
            backends = [w for w in workloads
                        if selector and all(pod_labels(w).get(k) == v
                                            for k, v in selector.items())]
            if not backends:
                raise TranslateError(
                    f"Service {svc['metadata']['name']} selects no Pod or Deployment "
                    f"in the input")
            by_number, by_name = self.container_port_map(backends[0])
            for p in svc["spec"].get("ports", []):
                target = p.get("targetPort", p["port"])
                host = by_name.get(target) if isinstance(target, str) else by_number.get(target)
                if host is None:
                    raise TranslateError(
                        f"Service {svc['metadata']['name']} port {p['port']} targets "
                        f"{target}, which no container of its pods declares")
                targets.append((service_dns_names(svc), p["port"], host))
        return targets

    # --- Workloads ---------------------------------------------------------------------

    def translate_workload(self, obj, services):
        obj = copy.deepcopy(obj)
        name = obj["metadata"]["name"]
        if obj["kind"] == "Deployment":
            replicas = obj["spec"].get("replicas")
            if replicas != 1:
                self.note(f"Deployment {name}: replicas {replicas} -> 1")
            obj["spec"]["replicas"] = 1
        spec = pod_spec(obj)
        spec["hostNetwork"] = True
        self.note(f"{obj['kind']} {name}: hostNetwork: true")
        hostnames = [n for svc in services for n in service_dns_names(svc)]
        if hostnames:
            spec["hostAliases"] = [{"ip": "127.0.0.1", "hostnames": hostnames}]
            self.note(f"{obj['kind']} {name}: hostAliases 127.0.0.1 for "
                      f"{', '.join(hostnames)}")
            self.mount_hosts_file(obj, spec, hostnames)
        for c in all_containers(spec):
            self.translate_container(obj, c)
        for v in spec.get("volumes", []):
            if "secret" in v:
                self.translate_secret_volume(obj, spec, v)
            elif "emptyDir" in v:
                self.rename_volume(obj, spec, v, f"{pod_name(obj)}-{v['name']}")
        return obj, self.split_init_containers(obj)

    def rename_volume(self, obj, spec, v, name):
        """podman 4.3 makes an emptyDir a volume named as the pod's volume, which every
        pod with a volume of that name would share: each pod's gets its own name."""
        for c in all_containers(spec):
            for m in c.get("volumeMounts", []):
                if m["name"] == v["name"]:
                    m["name"] = name
        self.note(f"{pod_name(obj)}: emptyDir {v['name']} -> volume {name}")
        v["name"] = name

    def split_init_containers(self, obj):
        """Each init container becomes a Pod of its own (restartPolicy: Never) with the
        pod's settings and the volumes it mounts, for the caller to run to completion,
        in order, before playing the pod. podman 4.3 runs init containers itself, but
        here its start waits 20 s for each one's conmon and then fails now and then to
        remove it ("once" init containers are deleted, with their logs)."""
        spec = pod_spec(obj)
        pods = []
        for c in spec.pop("initContainers", []):
            used = {m["name"] for m in c.get("volumeMounts", [])}
            init_spec = {k: v for k, v in spec.items() if k not in ("containers", "volumes")}
            init_spec["restartPolicy"] = "Never"
            init_spec["containers"] = [c]
            init_spec["volumes"] = [v for v in spec.get("volumes", []) if v["name"] in used]
            name = f"{obj['metadata']['name']}-init-{c['name']}"
            pods.append({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": name, "labels": dict(pod_labels(obj))},
                         "spec": init_spec})
            self.note(f"{pod_name(obj)}: init container {c['name']} -> Pod {name}, to run "
                      f"to completion first")
        return pods

    def translate_container(self, obj, c):
        where = f"{pod_name(obj)}/{c['name']}"
        named = {}
        # In the host network a container's port is the host's, and podman maps every
        # declared port, which it refuses there ("PortMappings can only be used with
        # Bridge or slirp4netns networking"): the ports go, their numbers stay in use.
        for p in c.pop("ports", []):
            hp = self.host_port(c, p)
            named[p.get("name")] = hp
            self.note(f"{where}: port {p.get('name', '')} {p['containerPort']} -> "
                      f"127.0.0.1:{hp} (declaration removed)")
        for kind in PROBES:
            probe = c.pop(kind, None)
            if probe is None:
                continue
            get = probe.get("httpGet")
            if get is None:
                raise TranslateError(f"{where}: {kind} is not httpGet; translate it here")
            port = named.get(get["port"], get["port"])
            scheme = get.get("scheme", "HTTP").lower()
            url = f"{scheme}://127.0.0.1:{port}{get.get('path', '/')}"
            self.checks.append((kind, where, url))
            self.note(f"{where}: {kind} removed; the caller checks {url}")
        image = c["image"]
        base = re.sub(r":[^/:]*$", "", image)
        if base in self.images:
            c["image"] = self.images[base]
            self.note(f"{where}: image {image} -> {c['image']}")
        c["imagePullPolicy"] = "Never"

    def mount_hosts_file(self, obj, spec, hostnames):
        """podman 4.3 writes hostAliases into the infra container's /etc/hosts only, which
        containers in the host network do not share: each gets this file instead."""
        path = os.path.abspath(os.path.join(self.out_dir, "hosts", pod_name(obj)))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n")
            f.write("".join(f"127.0.0.1\t{n}\n" for n in hostnames))
        os.chmod(path, 0o644)
        spec.setdefault("volumes", []).append(
            {"name": "kube-play-hosts", "hostPath": {"path": path, "type": "File"}})
        for c in all_containers(spec):
            c.setdefault("volumeMounts", []).append(
                {"name": "kube-play-hosts", "mountPath": "/etc/hosts", "readOnly": True})
        self.note(f"{pod_name(obj)}: hostAliases also as {path} on /etc/hosts")

    def translate_secret_volume(self, obj, spec, v):
        secret = v.pop("secret")
        name = secret["secretName"]
        if self.secrets_dir is None:
            raise TranslateError(
                f"{pod_name(obj)} mounts Secret {name}: give --secrets DIR with "
                f"DIR/{name}/KEY files")
        source = os.path.join(self.secrets_dir, name)
        if not os.path.isdir(source):
            raise TranslateError(f"Secret {name}: no directory {source}")
        items = secret.get("items") or [{"key": k, "path": k}
                                        for k in sorted(os.listdir(source))]
        target = os.path.abspath(
            os.path.join(self.out_dir, "secrets", pod_name(obj), v["name"]))
        if os.path.exists(target):
            shutil.rmtree(target)
        os.makedirs(target, mode=0o755)
        mode = secret.get("defaultMode", 0o644)
        group = spec.get("securityContext", {}).get("fsGroup")
        for item in items:
            src = os.path.join(source, item["key"])
            if not os.path.isfile(src):
                raise TranslateError(f"Secret {name} has no key {item['key']} ({src})")
            dst = os.path.join(target, item["path"])
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(src, dst)
            os.chmod(dst, item.get("mode", mode))
            if group is not None and os.geteuid() == 0:
                os.chown(dst, 0, group)
        v["hostPath"] = {"path": target, "type": "Directory"}
        self.note(f"{pod_name(obj)}: Secret {name} -> hostPath {target} "
                  f"({', '.join(i['path'] for i in items)}, mode {mode:o}"
                  f"{', group ' + str(group) if group is not None else ''})")

    # --- Claims and ConfigMaps ---------------------------------------------------------

    def translate_claim(self, claim, workloads):
        claim = copy.deepcopy(claim)
        name = claim["metadata"]["name"]
        users = [w for w in workloads
                 if any(v.get("persistentVolumeClaim", {}).get("claimName") == name
                        for v in pod_spec(w).get("volumes", []))]
        if users:
            ctx = pod_spec(users[0]).get("securityContext", {})
            notes = claim["metadata"].setdefault("annotations", {})
            if "runAsUser" in ctx:
                notes["volume.podman.io/uid"] = str(ctx["runAsUser"])
            group = ctx.get("fsGroup", ctx.get("runAsGroup"))
            if group is not None:
                notes["volume.podman.io/gid"] = str(group)
            self.note(f"PersistentVolumeClaim {name}: volume owned by "
                      f"{notes.get('volume.podman.io/uid', '-')}:"
                      f"{notes.get('volume.podman.io/gid', '-')}")
        return claim

    def translate_configmap(self, cm, workloads, targets):
        cm = copy.deepcopy(cm)
        name = cm["metadata"]["name"]
        local = {}  # containerPort -> host port, of the pods that mount this ConfigMap
        for w in workloads:
            if any(v.get("configMap", {}).get("name") == name
                   for v in pod_spec(w).get("volumes", [])):
                by_number, _ = self.container_port_map(w)
                local.update(by_number)
        for key, text in sorted(cm.get("data", {}).items()):
            new = text
            for port, hp in local.items():
                new = re.sub(rf"(?<![\w.:])(?:0\.0\.0\.0|\[::\]):{port}(?!\d)",
                             f"127.0.0.1:{hp}", new)
                new = re.sub(rf"(\blisten\s+){port}(?=[\s;])", rf"\g<1>127.0.0.1:{hp}", new)
            for names, sport, hp in targets:
                alternation = "|".join(re.escape(n) for n in names)
                new = re.sub(rf"(?<![\w.-])({alternation}):{sport}(?!\d)",
                             rf"\g<1>:{hp}", new)
            if new != text:
                cm["data"][key] = new
                self.note(f"ConfigMap {name} {key}: addresses rewritten for the host "
                          f"network")
        return cm


def parse_pairs(values, what):
    pairs = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key or not value:
            raise TranslateError(f"{what} '{v}': expected NAME=VALUE")
        pairs[key] = value
    return pairs


def translate(rendered, services_files, ports, images, secrets_dir, out_dir):
    docs = load_documents(rendered)
    extra = [d for f in services_files for d in load_documents(f)]
    workloads = [d for d in docs if d["kind"] in ("Deployment", "Pod")]
    other_workloads = [d for d in extra if d["kind"] in ("Deployment", "Pod")]
    services = [d for d in docs + extra if d["kind"] == "Service"]

    os.makedirs(out_dir, exist_ok=True)
    t = Translator({k: int(v) for k, v in parse_pairs(ports, "--port").items()},
                   parse_pairs(images, "--image"), secrets_dir, out_dir)
    targets = t.service_targets(services, workloads + other_workloads)

    played, claims, configmaps, inits = [], [], [], []
    for d in docs:
        kind, name = d["kind"], d["metadata"]["name"]
        if kind in ("Deployment", "Pod"):
            workload, init_pods = t.translate_workload(d, services)
            played.append(workload)
            inits += init_pods
        elif kind == "PersistentVolumeClaim":
            claims.append(t.translate_claim(d, workloads))
        elif kind == "ConfigMap":
            configmaps.append(t.translate_configmap(d, workloads, targets))
        elif kind == "Service":
            t.note(f"Service {name}: not played; hostAliases and address rewrites")
        elif kind in DROPPED:
            t.note(f"{kind} {name}: dropped ({DROPPED[kind]})")
        elif kind == "Secret":
            raise TranslateError(f"Secret {name} in the manifests: give its keys with "
                                 f"--secrets instead")
        else:
            raise TranslateError(f"{kind} {name}: no translation for this kind; add one "
                                 f"to {os.path.basename(__file__)}")
    unused = sorted(set(t.ports) - t.used_ports)
    if unused:
        raise TranslateError(f"--port {', '.join(unused)}: no such container port")

    def dump(path, objs):
        with open(os.path.join(out_dir, path), "w", encoding="utf-8") as f:
            yaml.dump_all(objs, f, Dumper=BlockDumper, sort_keys=False)

    dump("play.yaml", played)
    dump("claims.yaml", claims)
    os.makedirs(os.path.join(out_dir, "init"), exist_ok=True)
    for i, pod in enumerate(inits):
        dump(os.path.join("init", f"{i}-{pod['metadata']['name']}.yaml"), [pod])
    # podman 4.3 reads one ConfigMap from each --configmap file.
    os.makedirs(os.path.join(out_dir, "configmaps"), exist_ok=True)
    for cm in configmaps:
        dump(os.path.join("configmaps", cm["metadata"]["name"] + ".yaml"), [cm])
    with open(os.path.join(out_dir, "checks.tsv"), "w", encoding="utf-8") as f:
        for kind, where, url in t.checks:
            f.write(f"{kind}\t{where}\t{url}\n")
    with open(os.path.join(out_dir, "translation.txt"), "w", encoding="utf-8") as f:
        f.write("".join(n + "\n" for n in t.notes))
    return t


def main(argv):
    parser = argparse.ArgumentParser(
        description="Translate rendered manifests for podman kube play (see the module "
                    "docstring for each rule).")
    parser.add_argument("rendered", help="kubectl kustomize output")
    parser.add_argument("--out", required=True, help="directory for the results")
    parser.add_argument("--port", action="append", default=[],
                        help="CONTAINER:PORT_NAME=HOST_PORT, one per container port")
    parser.add_argument("--image", action="append", default=[],
                        help="NAME=REFERENCE: run REFERENCE where the manifests say NAME")
    parser.add_argument("--secrets", help="directory of SECRET_NAME/KEY files")
    parser.add_argument("--services", action="append", default=[],
                        help="another rendering whose Services pods may call")
    args = parser.parse_args(argv)
    try:
        translate(args.rendered, args.services, args.port, args.image, args.secrets,
                  args.out)
    except (TranslateError, KeyError, OSError, yaml.YAMLError) as e:
        print(f"kube_play_translate: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
