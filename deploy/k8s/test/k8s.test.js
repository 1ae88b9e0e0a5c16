// Offline validation of offkey's Kubernetes manifests (deploy/k8s): renders the base,
// each overlay and the example with `kubectl kustomize`, validates every object against
// the Kubernetes API schemas (npm kubernetes-models) and cert-manager's Certificate
// fields, and applies offkey's policy checks (checks.js). The last group breaks
// manifests on purpose and expects every check to notice.
//
// Run: deploy/k8s/test/run_test.sh under Bazel (bazel test //deploy/k8s:manifests_test),
// or `node --test deploy/k8s/test/` after `bazel build //deploy/k8s:offkeyd_config_check`.
// Environment (set by run_test.sh): OFFKEY_K8S_DIR (deploy/k8s), OFFKEY_CONFIG_CHECK
// (the offkeyd_config_check binary), OFFKEY_PROTO_DIR (proto/), KUBECTL.
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { describe, test } = require('node:test');
const yaml = require('js-yaml');
const checks = require('./checks');

const K8S_DIR = process.env.OFFKEY_K8S_DIR || path.resolve(__dirname, '..');
const WORKSPACE = path.resolve(K8S_DIR, '..', '..');
const CONFIG_CHECK = process.env.OFFKEY_CONFIG_CHECK ||
  path.join(WORKSPACE, 'bazel-bin', 'deploy', 'k8s', 'offkeyd_config_check');
const PROTO_DIR = process.env.OFFKEY_PROTO_DIR || path.join(WORKSPACE, 'proto');
const KUBECTL = process.env.KUBECTL || 'kubectl';
const TMP = fs.mkdtempSync(path.join(process.env.TEST_TMPDIR || os.tmpdir(), 'offkey-k8s-'));

// What each rendering is, and which Secrets the operator creates for it by hand
// (deploy/README.md, Install); every other mounted Secret must come from a Certificate.
const RENDERINGS = {
  base: { offkeyd: true, operatorSecrets: ['offkey/offkeyd-tls', 'offkey/offkeyd-hsm-pin'] },
  dev: { offkeyd: true, single: true,
         operatorSecrets: ['offkey/offkeyd-tls', 'offkey/offkeyd-hsm-pin'] },
  production: { offkeyd: true, operatorSecrets: ['offkey/offkeyd-hsm-pin'] },
  'examples/nginx-terminator': { offkeyd: false, operatorSecrets: [] },
  'examples/nginx-ticket-keys': { offkeyd: false, operatorSecrets: [] },
  issuance: { offkeyd: false, operatorSecrets: [] },
};

const cache = new Map();
// The rendering of deploy/k8s/NAME (rendered once; a failure fails every test using it).
function rendered(name) {
  if (!cache.has(name)) {
    try {
      cache.set(name, { objects: checks.render(path.join(K8S_DIR, name), KUBECTL) });
    } catch (e) {
      cache.set(name, { error: e });
    }
  }
  const r = cache.get(name);
  if (r.error) throw r.error;
  return structuredClone(r.objects);
}

function assertNone(problems) {
  assert.deepEqual(problems, [], `\n  ${problems.join('\n  ')}`);
}

const byName = (objects, kind, name) =>
  objects.find((o) => o.kind === kind && o.metadata.name === name);

// --------------------------------------------------------------------------------------
// Every rendering: schemas and policy

for (const [name, spec] of Object.entries(RENDERINGS)) {
  describe(name, () => {
    test('renders with kubectl kustomize', () => {
      assert.ok(rendered(name).length > 0, 'no objects');
    });
    test('objects match the Kubernetes API schemas', () => {
      assertNone(checks.schemaProblems(rendered(name)));
    });
    test('cert-manager objects have the required fields', () => {
      assertNone(checks.certManagerProblems(rendered(name)));
    });
    test('containers run as non-root with a numeric UID', () => {
      assertNone(checks.nonRootProblems(rendered(name)));
    });
    test('containers have a read-only root filesystem', () => {
      assertNone(checks.readOnlyRootProblems(rendered(name)));
    });
    test('containers drop ALL capabilities', () => {
      assertNone(checks.capabilityProblems(rendered(name)));
    });
    test('containers cannot escalate privileges and use seccomp RuntimeDefault', () => {
      assertNone(checks.privilegeProblems(rendered(name)));
    });
    test('containers have CPU and memory requests and limits', () => {
      assertNone(checks.resourceProblems(rendered(name)));
    });
    test('long-running containers have readiness and liveness probes', () => {
      assertNone(checks.probeProblems(rendered(name)));
    });
    test('no Secret has inline data or stringData', () => {
      assertNone(checks.inlineSecretProblems(rendered(name)));
    });
    test('no ConfigMap or env value looks like a PIN or a private key', () => {
      assertNone(checks.pinAndKeyProblems(rendered(name)));
    });
    test('mounted Secrets come from cert-manager or the operator', () => {
      assertNone(checks.secretSourceProblems(rendered(name), spec.operatorSecrets));
    });
    if (!spec.offkeyd) return;
    test("offkeyd's probes ask /readyz and /healthz on its HTTP port", () => {
      assertNone(checks.offkeydProbeProblems(rendered(name)));
    });
    test('offkeyd reads its config, certificates and PIN file from mounted volumes', () => {
      assertNone(checks.offkeydWiringProblems(rendered(name)));
    });
    test('offkeyd.textproto encodes with protoc --encode=offkey.v1.ServerConfig', () => {
      const dir = fs.mkdtempSync(path.join(TMP, 'protoc-'));
      const configs = checks.writeOffkeydConfigs(rendered(name), dir);
      assert.equal(configs.length, 1, 'one offkeyd.textproto ConfigMap');
      assertNone(checks.protocProblems(configs, PROTO_DIR));
    });
    test("offkeyd.textproto passes offkeyd's own config loader", () => {
      const dir = fs.mkdtempSync(path.join(TMP, 'loader-'));
      const configs = checks.writeOffkeydConfigs(rendered(name), dir);
      assert.equal(configs.length, 1, 'one offkeyd.textproto ConfigMap');
      assertNone(checks.configLoaderProblems(configs, CONFIG_CHECK));
    });
    test('replicas, spread, disruption budget, Services and autoscaler', () => {
      assertNone(checks.availabilityProblems(rendered(name), { singleReplica: !!spec.single }));
    });
    test('NetworkPolicy admits only labelled namespaces to their ports', () => {
      assertNone(checks.networkPolicyProblems(rendered(name)));
    });
  });
}

// --------------------------------------------------------------------------------------
// What each overlay adds

describe('dev overlay', () => {
  test('a SoftHSM2 token on the claim, made by softhsm2-util in an init container', () => {
    const objects = rendered('dev');
    const pod = byName(objects, 'Deployment', 'offkeyd').spec.template.spec;
    assert.equal(pod.initContainers.length, 1);
    const init = pod.initContainers[0];
    assert.match(init.command.join(' '), /softhsm2-util --init-token/);
    assert.ok(byName(objects, 'PersistentVolumeClaim', 'softhsm-tokens'), 'the claim');
    const tokensVolume = pod.volumes.find((v) => v.persistentVolumeClaim &&
      v.persistentVolumeClaim.claimName === 'softhsm-tokens');
    assert.ok(tokensVolume, 'the claim is a volume of the pod');
    // Both containers find the token directory that softhsm2.conf names on the claim.
    const confCm = objects.find((o) => o.kind === 'ConfigMap' && (o.data || {})['softhsm2.conf']);
    const tokendir = /^directories\.tokendir\s*=\s*(\S+)/m.exec(confCm.data['softhsm2.conf'])[1];
    // The image's /var/lib/softhsm is Debian's (mode 2770, group softhsm): user 65532
    // cannot enter it, so a claim mounted below it is out of reach.
    assert.ok(!tokendir.startsWith('/var/lib/softhsm/'), `token directory ${tokendir}`);
    const confVolume = pod.volumes.find((v) => v.configMap && v.configMap.name === confCm.metadata.name);
    for (const c of [init, pod.containers.find((x) => x.name === 'offkeyd')]) {
      const mount = c.volumeMounts.find((m) => m.name === tokensVolume.name);
      assert.ok(mount && tokendir.replace(/\/$/, '') === mount.mountPath, `${c.name} mounts the tokens`);
      const env = (c.env || []).find((e) => e.name === 'SOFTHSM2_CONF');
      const confMount = c.volumeMounts.find((m) => m.name === confVolume.name);
      assert.equal(env.value, `${confMount.mountPath}/softhsm2.conf`, `${c.name} SOFTHSM2_CONF`);
    }
    // Two pods must never write one token: the old one stops first.
    assert.equal(byName(objects, 'Deployment', 'offkeyd').spec.strategy.type, 'Recreate');
  });
});

describe('production overlay', () => {
  test("the vendor's PKCS#11 module comes from a node or CSI volume, with placeholders", () => {
    const objects = rendered('production');
    const text = byName(objects, 'ConfigMap', 'offkeyd-config').data['offkeyd.textproto'];
    const module = checks.textprotoString(text, 'module_path');
    assert.match(module, /REPLACE_/, 'module_path is a visible placeholder');
    assert.match(checks.textprotoString(text, 'token_uri'), /^pkcs11:.*REPLACE_/);
    const pod = byName(objects, 'Deployment', 'offkeyd').spec.template.spec;
    const offkeyd = pod.containers.find((c) => c.name === 'offkeyd');
    const mount = offkeyd.volumeMounts.find((m) => module.startsWith(`${m.mountPath}/`));
    assert.ok(mount && mount.readOnly, 'module_path lies in a read-only mount');
    const volume = pod.volumes.find((v) => v.name === mount.name);
    assert.ok(volume.hostPath || volume.csi, 'from hostPath or CSI');
    if (volume.hostPath) assert.match(volume.hostPath.path, /REPLACE_/);
    assert.match(offkeyd.image, /^[a-z0-9.-]+\.[a-z]+\/.+:.+/, 'image from a registry, tagged');
  });
  test('cert-manager makes the Secret offkeyd mounts, for the names clients verify', () => {
    const objects = rendered('production');
    const cert = byName(objects, 'Certificate', 'offkeyd-tls');
    assert.ok(cert, 'Certificate offkeyd-tls');
    const tls = byName(objects, 'Deployment', 'offkeyd').spec.template.spec.volumes
      .find((v) => v.name === 'tls');
    assert.equal(cert.spec.secretName, tls.secret.secretName);
    for (const n of ['offkeyd.offkey.svc', 'offkeyd-headless.offkey.svc.cluster.local']) {
      assert.ok(cert.spec.dnsNames.includes(n), n);
    }
    assert.ok(cert.spec.usages.includes('server auth'));
  });
});

// The provider's openssl.cnf contract, exactly.
const PROVIDER_CONTRACT = {
  '': { openssl_conf: 'openssl_init' },
  openssl_init: { providers: 'provider_sect', alg_section: 'evp_properties' },
  provider_sect: { default: 'default_sect', offkey: 'offkey_sect' },
  default_sect: { activate: '1' },
  offkey_sect: {
    module: '/usr/lib/x86_64-linux-gnu/ossl-modules/offkey.so',
    activate: '1',
    endpoint: 'dns:///offkeyd-headless.offkey.svc.cluster.local:8443',
    tls_ca_file: '/etc/offkey/tls/ca.crt',
    tls_cert_file: '/etc/offkey/tls/tls.crt',
    tls_key_file: '/etc/offkey/tls/tls.key',
    server_name: 'offkeyd.offkey.svc',
    deadline_ms: '2000',
  },
  evp_properties: { default_properties: '?provider=default' },
};

function parseOpensslCnf(text) {
  const sections = { '': {} };
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*$/, '').trim();
    if (line === '') continue;
    const section = /^\[\s*([^\]\s]+)\s*\]$/.exec(line);
    if (section) {
      current = section[1];
      sections[current] = sections[current] || {};
      continue;
    }
    const kv = /^([^=\s]+)\s*=\s*(.*)$/.exec(line);
    assert.ok(kv, `not a key = value line: ${line}`);
    sections[current][kv[1]] = kv[2];
  }
  return sections;
}

describe('nginx-terminator example', () => {
  const example = 'examples/nginx-terminator';
  test("openssl.cnf is the offkey provider's contract, exactly", () => {
    const cm = rendered(example).find((o) => o.kind === 'ConfigMap' && (o.data || {})['openssl.cnf']);
    assert.deepEqual(parseOpensslCnf(cm.data['openssl.cnf']), PROVIDER_CONTRACT);
  });
  test('nginx loads the key reference, openssl.cnf and client certificate from mounts', () => {
    const objects = rendered(example);
    const pod = byName(objects, 'Deployment', 'nginx-terminator').spec.template.spec;
    const nginx = pod.containers[0];
    const mountFor = (file) => nginx.volumeMounts.find((m) => file.startsWith(`${m.mountPath}/`));
    const volumeFor = (file) => pod.volumes.find((v) => v.name === mountFor(file).name);
    const cmFor = (file) => byName(objects, 'ConfigMap', volumeFor(file).configMap.name);
    // nginx.conf (given with -c) names the key reference.
    const confFile = nginx.command[nginx.command.indexOf('-c') + 1];
    const conf = cmFor(confFile).data[path.basename(confFile)];
    assert.match(conf, /^\s*ssl_certificate_key \/etc\/nginx\/offkey\/server\.ref;/m);
    assert.doesNotMatch(conf, /^\s*user\s/m, 'no user directive: the pod is not root');
    const ref = cmFor('/etc/nginx/offkey/server.ref');
    assert.ok('server.ref' in ref.data, 'the key reference is a ConfigMap key');
    const certFile = /^\s*ssl_certificate (\S+);/m.exec(conf)[1];
    assert.ok(path.basename(certFile) in cmFor(certFile).data, 'the certificate chain is mounted');
    // OPENSSL_CONF points at the mounted openssl.cnf.
    const opensslConf = nginx.env.find((e) => e.name === 'OPENSSL_CONF').value;
    assert.ok(path.basename(opensslConf) in cmFor(opensslConf).data);
    // The provider's client certificate files come from the Certificate's Secret.
    const secret = volumeFor(PROVIDER_CONTRACT.offkey_sect.tls_cert_file).secret;
    assert.ok(secret, 'tls files from a Secret volume');
    const cert = objects.find((o) => o.kind === 'Certificate' && o.spec.secretName === secret.secretName);
    assert.ok(cert && cert.spec.usages.includes('client auth'), 'a client-auth Certificate');
  });
  test("the terminator is admitted by offkeyd's NetworkPolicy and granted by its policy", () => {
    const objects = rendered(example);
    const ns = objects.find((o) => o.kind === 'Namespace');
    const np = byName(rendered('base'), 'NetworkPolicy', 'offkeyd');
    const admitted = np.spec.ingress.filter((rule) => rule.from.some((peer) =>
      Object.entries(peer.namespaceSelector.matchLabels)
        .every(([k, v]) => (ns.metadata.labels || {})[k] === v)));
    assert.ok(admitted.some((rule) => rule.ports.some((p) => p.port === 'grpc')), 'data port open');
    assert.ok(!admitted.some((rule) => rule.ports.some((p) => p.port === 'admin')), 'admin port closed');
    const text = byName(rendered('base'), 'ConfigMap', 'offkeyd-config').data['offkeyd.textproto'];
    const prefixes = [...text.matchAll(/identities:\s*"([^"]*)\/\*"/g)].map((m) => `${m[1]}/`);
    const uri = objects.find((o) => o.kind === 'Certificate').spec.uris[0];
    assert.ok(prefixes.some((p) => uri.startsWith(p)), `${uri} matches a grant`);
  });
});

describe('nginx-ticket-keys example', () => {
  const example = 'examples/nginx-ticket-keys';
  test('a sidecar writes the ticket keys nginx.conf names to a memory emptyDir', () => {
    const objects = rendered(example);
    const pod = byName(objects, 'Deployment', 'nginx-terminator').spec.template.spec;
    const [nginx, writer] = pod.containers;
    assert.equal(nginx.name, 'nginx');
    const init = pod.initContainers.find((c) => c.name === 'ticket-keys-init');
    assert.ok(init, 'an init container writes the files before nginx starts');
    assert.deepEqual(init.command.slice(0, 3), ['offkeyctl', 'ticket-keys', 'edge']);
    assert.ok(!init.command.includes('--watch'), 'the init container writes once');
    assert.deepEqual(writer.command.slice(0, 3), ['offkeyctl', 'ticket-keys', 'edge']);
    assert.ok(writer.command.includes('--watch'), 'the sidecar keeps them current');
    const out = writer.command[writer.command.indexOf('--out') + 1];
    const volume = pod.volumes.find((v) =>
      v.name === writer.volumeMounts.find((m) => m.mountPath === out).name);
    assert.equal(volume.emptyDir.medium, 'Memory', 'ticket keys never reach a disk');
    const nginxMount = nginx.volumeMounts.find((m) => m.name === volume.name);
    assert.ok(nginxMount && nginxMount.readOnly, 'nginx reads the same volume, read-only');
    // nginx.conf names the three files in the shared volume, current first.
    const confFile = nginx.command[nginx.command.indexOf('-c') + 1];
    const confVolume = pod.volumes.find((v) =>
      v.name === nginx.volumeMounts.find((m) => confFile.startsWith(`${m.mountPath}/`)).name);
    const conf = byName(objects, 'ConfigMap', confVolume.configMap.name)
      .data[path.basename(confFile)];
    const keys = [...conf.matchAll(/^\s*ssl_session_ticket_key (\S+);/gm)].map((m) => m[1]);
    assert.deepEqual(keys, ['current.key', 'previous.key', 'next.key']
      .map((f) => `${nginxMount.mountPath}/${f}`));
    // The reload signal reaches nginx's master: one process namespace, its pid file.
    assert.equal(pod.shareProcessNamespace, true);
    const pidFile = /^\s*pid (\S+);/m.exec(conf)[1];
    assert.match(writer.command[writer.command.indexOf('--reload-command') + 1],
      new RegExp(`kill -HUP .*${pidFile}`));
  });
  test("offkeyd's policy grants the terminator's identity GET_TICKET_KEYS on the set", () => {
    const objects = rendered(example);
    const writer = byName(objects, 'Deployment', 'nginx-terminator').spec.template.spec
      .containers.find((c) => c.name === 'ticket-keys');
    const set = writer.command[2];
    const uri = objects.find((o) => o.kind === 'Certificate').spec.uris[0];
    for (const config of ['base', 'production']) {
      const text = rendered(config).find((o) => o.kind === 'ConfigMap' &&
        (o.data || {})['offkeyd.textproto']).data['offkeyd.textproto'];
      // Ticket grants hold no nested block, so a grant's text ends at its first '}'.
      const granted = [...text.matchAll(/grants\s*\{([^}]*)\}/g)].map((m) => m[1])
        .filter((g) => /GET_TICKET_KEYS/.test(g) &&
                       new RegExp(`ticket_key_sets:\\s*"${set}"`).test(g))
        .flatMap((g) => [...g.matchAll(/identities:\s*"([^"]*)"/g)].map((m) => m[1]))
        .some((id) => id === uri || (id.endsWith('/*') && uri.startsWith(id.slice(0, -1))));
      assert.ok(granted, `${config}: ${uri} may get the keys of set ${set}`);
    }
  });
});

// --------------------------------------------------------------------------------------
// What offkey's CA signs, and for whom

// Everything one cluster would hold: offkeyd (production), the terminator example and
// the issuance rules.
const issued = () => ['production', 'examples/nginx-terminator', 'issuance']
  .flatMap((name) => rendered(name));

describe('issuance', () => {
  test("offkey's CA signs each Certificate only by a policy of its own namespace, " +
       'and no policy allows a name of another namespace', () => {
    assertNone(checks.issuanceProblems(issued()));
  });
  test("the ClusterIssuer is the one offkeyd's certificate names", () => {
    const objects = issued();
    const issuer = byName(objects, 'ClusterIssuer', 'offkey-ca');
    assert.ok(issuer && issuer.spec.ca.secretName, 'ClusterIssuer offkey-ca, a CA issuer');
    for (const cert of objects.filter((x) => x.kind === 'Certificate')) {
      assert.deepEqual(cert.spec.issuerRef,
        { group: 'cert-manager.io', kind: 'ClusterIssuer', name: 'offkey-ca' }, checks.describe(cert));
    }
  });
  test("the admin's SPIFFE ID and offkeyd's DNS names are allowed in one namespace each", () => {
    const policies = issued().filter((x) => x.kind === 'CertificateRequestPolicy');
    const admin = checks.textprotoString(
      byName(rendered('production'), 'ConfigMap', 'offkeyd-config').data['offkeyd.textproto'],
      'admin_identities');
    const allowing = (field, value) => policies.filter((p) =>
      ((p.spec.allowed[field] || {}).values || []).some((v) => checks.wildcardMatches(v, value)))
      .map((p) => p.spec.selector.namespace.matchNames.join());
    assert.deepEqual(allowing('uris', admin), ['offkey-operator']);
    assert.deepEqual(allowing('dnsNames', 'offkeyd.offkey.svc'), ['offkey']);
  });
});

// --------------------------------------------------------------------------------------
// kustomize can retarget the images

test("kustomize's images: retargets offkeyd in every overlay", () => {
  for (const overlay of ['base', 'dev', 'production']) {
    const dir = fs.mkdtempSync(path.join(TMP, 'images-'));
    fs.writeFileSync(path.join(dir, 'kustomization.yaml'), yaml.dump({
      apiVersion: 'kustomize.config.k8s.io/v1beta1',
      kind: 'Kustomization',
      // kustomize takes other kustomizations by relative path only.
      resources: [path.relative(dir, path.join(K8S_DIR, overlay))],
      images: [{ name: 'offkeyd', newName: 'registry.test/offkey/offkeyd', newTag: '9.9.9' },
               { name: 'registry.example.com/offkey/offkeyd', newName: 'registry.test/offkey/offkeyd',
                 newTag: '9.9.9' }],
    }));
    const all = checks.containers(checks.render(dir, KUBECTL));
    assert.ok(all.length > 0);
    for (const { where, container } of all) {
      assert.equal(container.image, 'registry.test/offkey/offkeyd:9.9.9', `${overlay}: ${where}`);
    }
  }
});

// --------------------------------------------------------------------------------------
// Every check fails on a manifest broken the way it guards against.

describe('each check catches a broken manifest', () => {
  const deployment = (objects) => byName(objects, 'Deployment', 'offkeyd');
  const offkeyd = (objects) => deployment(objects).spec.template.spec.containers[0];
  const init = (objects) => deployment(objects).spec.template.spec.initContainers[0];
  const config = (objects) => byName(objects, 'ConfigMap', 'offkeyd-config');
  const editConfig = (objects, from, to) => {
    const cm = config(objects);
    assert.ok(cm.data['offkeyd.textproto'].includes(from), `config has ${from}`);
    cm.data['offkeyd.textproto'] = cm.data['offkeyd.textproto'].replace(from, to);
  };
  const runConfig = (objects, fn) => {
    const dir = fs.mkdtempSync(path.join(TMP, 'broken-'));
    return fn(checks.writeOffkeydConfigs(objects, dir));
  };
  // [name, rendering (a name, or a function returning objects), break it, check]
  const cases = [
    ['schema: a port that is not a number', 'base',
      (o) => { offkeyd(o).ports[0].containerPort = 'grpc'; }, checks.schemaProblems],
    ['schema: a kind without a schema', 'base',
      (o) => { o.push({ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } }); },
      checks.schemaProblems],
    ['cert-manager: a Certificate without secretName', 'production',
      (o) => { delete byName(o, 'Certificate', 'offkeyd-tls').spec.secretName; },
      checks.certManagerProblems],
    ['cert-manager: an unknown usage and a misspelt field', 'production',
      (o) => { const s = byName(o, 'Certificate', 'offkeyd-tls').spec; s.usages.push('server'); s.dnsName = []; },
      checks.certManagerProblems],
    ['non-root: runAsUser 0 in an init container', 'dev',
      (o) => { init(o).securityContext.runAsUser = 0; }, checks.nonRootProblems],
    ['non-root: runAsNonRoot dropped from pod and container', 'base',
      (o) => { delete offkeyd(o).securityContext.runAsNonRoot;
               delete deployment(o).spec.template.spec.securityContext.runAsNonRoot; },
      checks.nonRootProblems],
    ['read-only root: readOnlyRootFilesystem false', 'examples/nginx-terminator',
      (o) => { byName(o, 'Deployment', 'nginx-terminator').spec.template.spec.containers[0]
        .securityContext.readOnlyRootFilesystem = false; }, checks.readOnlyRootProblems],
    ['capabilities: ALL not dropped in an init container', 'dev',
      (o) => { init(o).securityContext.capabilities.drop = ['NET_RAW']; }, checks.capabilityProblems],
    ['capabilities: one added', 'base',
      (o) => { offkeyd(o).securityContext.capabilities.add = ['IPC_LOCK']; }, checks.capabilityProblems],
    ['privileges: allowPrivilegeEscalation true', 'base',
      (o) => { offkeyd(o).securityContext.allowPrivilegeEscalation = true; }, checks.privilegeProblems],
    ['resources: a limit removed', 'base',
      (o) => { delete offkeyd(o).resources.limits.memory; }, checks.resourceProblems],
    ['resources: requests removed from an init container', 'dev',
      (o) => { delete init(o).resources.requests; }, checks.resourceProblems],
    ['probes: no readiness probe', 'examples/nginx-terminator',
      (o) => { delete byName(o, 'Deployment', 'nginx-terminator').spec.template.spec.containers[0]
        .readinessProbe; }, checks.probeProblems],
    ['secrets: a Secret with inline stringData', 'base',
      (o) => { o.push({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'offkeyd-hsm-pin', namespace: 'offkey' },
                        stringData: { pin: '123456' } }); }, checks.inlineSecretProblems],
    ['secrets: a Secret with inline data', 'production',
      (o) => { o.push({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'x', namespace: 'offkey' },
                        data: { 'tls.key': 'AAAA' } }); }, checks.inlineSecretProblems],
    ['PIN: an environment variable HSM_PIN', 'base',
      (o) => { offkeyd(o).env = [{ name: 'HSM_PIN', value: '123456' }]; }, checks.pinAndKeyProblems],
    ['PIN: pin_env in the offkeyd config', 'base',
      (o) => editConfig(o, 'pin_file: "/etc/offkey/hsm/pin"', 'pin_env: "OFFKEY_PIN"'),
      checks.pinAndKeyProblems],
    ['private key: a PEM private key in a ConfigMap', 'examples/nginx-terminator',
      (o) => { const cm = o.find((x) => x.kind === 'ConfigMap' && x.data['server.ref']);
               cm.data['server.ref'] = `-----BEGIN ${'PRIV'}ATE KEY-----\nMIIB\n`; },
      checks.pinAndKeyProblems],
    ['secret sources: a mounted Secret nobody makes', 'production',
      (o) => { deployment(o).spec.template.spec.volumes.find((v) => v.name === 'tls').secret.secretName = 'other'; },
      (o) => checks.secretSourceProblems(o, RENDERINGS.production.operatorSecrets)],
    ['offkeyd probes: readiness on a path offkeyd does not serve', 'base',
      (o) => { offkeyd(o).readinessProbe.httpGet.path = '/ready'; }, checks.offkeydProbeProblems],
    ['offkeyd probes: liveness on the gRPC port', 'production',
      (o) => { offkeyd(o).livenessProbe.httpGet.port = 'grpc'; }, checks.offkeydProbeProblems],
    ['offkeyd wiring: the PIN Secret not mounted', 'base',
      (o) => { offkeyd(o).volumeMounts = offkeyd(o).volumeMounts.filter((m) => m.name !== 'hsm-pin'); },
      checks.offkeydWiringProblems],
    ['offkeyd wiring: certificates mounted with subPath', 'production',
      (o) => { offkeyd(o).volumeMounts.find((m) => m.name === 'tls').subPath = 'tls.crt'; },
      checks.offkeydWiringProblems],
    ['protoc: a field that is not in ServerConfig', 'base',
      (o) => editConfig(o, 'listen_address:', 'listen_adress:'),
      (o) => runConfig(o, (c) => checks.protocProblems(c, PROTO_DIR))],
    ["config loader: a grant for '*' (well-formed, semantically refused)", 'production',
      (o) => editConfig(o, 'spiffe://cluster.local/ns/edge/*', '*'),
      (o) => runConfig(o, (c) => checks.configLoaderProblems(c, CONFIG_CHECK))],
    ['config loader: no PIN source', 'dev',
      (o) => editConfig(o, 'pin_file: "/etc/offkey/hsm/pin"', ''),
      (o) => runConfig(o, (c) => checks.configLoaderProblems(c, CONFIG_CHECK))],
    ['issuance: a terminator Certificate for the admin identity', issued,
      (o) => { byName(o, 'Certificate', 'offkey-client-tls').spec.uris =
        ['spiffe://cluster.local/ns/offkey-operator/sa/offkeyctl']; },
      checks.issuanceProblems],
    ["issuance: a terminator Certificate for offkeyd's DNS name", issued,
      (o) => { byName(o, 'Certificate', 'offkey-client-tls').spec.dnsNames = ['offkeyd.offkey.svc']; },
      checks.issuanceProblems],
    ['issuance: a client Certificate whose identity would be its CN', issued,
      (o) => { const s = byName(o, 'Certificate', 'offkey-client-tls').spec; delete s.uris;
               s.commonName = 'spiffe://cluster.local/ns/edge/sa/x'; },
      checks.issuanceProblems],
    ['issuance: a policy for every namespace', issued,
      (o) => { delete byName(o, 'CertificateRequestPolicy', 'offkey-terminators-edge').spec.selector.namespace; },
      checks.issuanceProblems],
    ['issuance: a terminator policy reaching into another namespace', issued,
      (o) => { byName(o, 'CertificateRequestPolicy', 'offkey-terminators-edge').spec.allowed.uris.values =
        ['spiffe://cluster.local/ns/*']; },
      checks.issuanceProblems],
    ['issuance: a policy opened in a namespace not its own', issued,
      (o) => { o.find((x) => x.kind === 'RoleBinding' && x.metadata.namespace === 'edge').metadata.namespace = 'shop';
               o.find((x) => x.kind === 'Role' && x.metadata.namespace === 'edge').metadata.namespace = 'shop'; },
      checks.issuanceProblems],
    ['issuance: approver policies usable cluster-wide', issued,
      (o) => { o.push({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'x' },
                        rules: [{ apiGroups: ['policy.cert-manager.io'], resources: ['certificaterequestpolicies'],
                                  verbs: ['use'] }] }); },
      checks.issuanceProblems],
    ["issuance: a second issuer over offkey's CA key", issued,
      (o) => { o.push({ apiVersion: 'cert-manager.io/v1', kind: 'Issuer',
                        metadata: { name: 'mine', namespace: 'shop' },
                        spec: { ca: { secretName: 'offkey-ca-keypair' } } }); },
      checks.issuanceProblems],
    ['cert-manager: a policy with a misspelt field', 'issuance',
      (o) => { byName(o, 'CertificateRequestPolicy', 'offkey-server').spec.allowed.dnsName = {}; },
      checks.certManagerProblems],
    ['availability: replicas not spread', 'base',
      (o) => { const s = deployment(o).spec.template.spec; delete s.topologySpreadConstraints; delete s.affinity; },
      (o) => checks.availabilityProblems(o)],
    ['availability: no headless Service', 'production',
      (o) => { const h = byName(o, 'Service', 'offkeyd-headless'); delete h.spec.clusterIP; },
      (o) => checks.availabilityProblems(o)],
    ['availability: an autoscaler left in dev', 'dev',
      (o) => { o.push(byName(rendered('base'), 'HorizontalPodAutoscaler', 'offkeyd')); },
      (o) => checks.availabilityProblems(o, { singleReplica: true })],
    ['network policy: ingress from everywhere', 'base',
      (o) => { byName(o, 'NetworkPolicy', 'offkeyd').spec.ingress[0].from = [{}]; },
      checks.networkPolicyProblems],
    ['network policy: admin port open to terminators', 'base',
      (o) => { byName(o, 'NetworkPolicy', 'offkeyd').spec.ingress[0].ports.push({ port: 'admin', protocol: 'TCP' }); },
      checks.networkPolicyProblems],
  ];
  for (const [name, rendering, breakIt, check] of cases) {
    test(name, () => {
      const objects = typeof rendering === 'function' ? rendering() : rendered(rendering);
      assertNone(check(objects));  // sound before...
      breakIt(objects);
      assert.ok(check(objects).length > 0, 'the check did not notice');  // ...caught after
    });
  }
});
