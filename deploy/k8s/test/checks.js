// The checks behind k8s.test.js: each takes rendered Kubernetes objects (plain objects
// parsed from `kubectl kustomize` output) and returns a list of problems, one string
// each, empty when the objects pass. Pure functions, so the tests can also feed them
// deliberately broken objects and see every check fail.
'use strict';

const childProcess = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const yaml = require('js-yaml');

// ---------------------------------------------------------------------------------------
// Rendering

// `kubectl kustomize DIR`, parsed. Throws with kubectl's message when it fails.
function render(dir, kubectl = 'kubectl') {
  const result = childProcess.spawnSync(kubectl, ['kustomize', dir], {
    encoding: 'utf8',
    maxBuffer: 16 << 20,
  });
  if (result.error) throw new Error(`cannot run ${kubectl}: ${result.error.message}`);
  if (result.status !== 0) {
    throw new Error(`kubectl kustomize ${dir} failed:\n${result.stderr}`);
  }
  return yaml.loadAll(result.stdout).filter((o) => o != null);
}

function describe(obj) {
  const ns = obj.metadata && obj.metadata.namespace ? `${obj.metadata.namespace}/` : '';
  return `${obj.kind} ${ns}${obj.metadata ? obj.metadata.name : '?'}`;
}

// ---------------------------------------------------------------------------------------
// Kubernetes API schemas (kubernetes-models)

// The kubernetes-models class for apiVersion/kind, or null when it has none.
function modelFor(apiVersion, kind) {
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') return null;
  if (!/^[A-Za-z0-9.]+(\/[A-Za-z0-9]+)?$/.test(apiVersion) || !/^[A-Za-z]+$/.test(kind)) {
    return null;
  }
  try {
    return require(`kubernetes-models/${apiVersion}/${kind}`)[kind] || null;
  } catch (e) {
    if (e.code === 'MODULE_NOT_FOUND' || e.code === 'ERR_PACKAGE_PATH_NOT_EXPORTED') return null;
    throw e;
  }
}

const CERT_MANAGER = 'cert-manager.io/v1';
const APPROVER_POLICY = 'policy.cert-manager.io/v1alpha1';

// Every object against its API schema. cert-manager kinds are not in kubernetes-models:
// they go to certManagerProblems instead; any other kind without a schema is a problem.
function schemaProblems(objects) {
  const problems = [];
  for (const obj of objects) {
    if (obj.apiVersion === CERT_MANAGER || obj.apiVersion === APPROVER_POLICY) continue;
    const Model = modelFor(obj.apiVersion, obj.kind);
    if (Model == null) {
      problems.push(`${describe(obj)}: no schema for ${obj.apiVersion} ${obj.kind}`);
      continue;
    }
    try {
      new Model(obj).validate();
    } catch (e) {
      problems.push(`${describe(obj)}: ${e.message}`);
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------------------
// cert-manager (cert-manager.io/v1), checked field by field against cert-manager's API
// reference: required fields present, enums and durations valid, no unknown spec field.

const CERTIFICATE_SPEC_FIELDS = new Set([
  'secretName', 'secretTemplate', 'issuerRef', 'commonName', 'dnsNames', 'uris',
  'ipAddresses', 'emailAddresses', 'otherNames', 'literalSubject', 'subject', 'duration',
  'renewBefore', 'renewBeforePercentage', 'usages', 'privateKey', 'isCA',
  'keystores', 'revisionHistoryLimit', 'additionalOutputFormats', 'encodeUsagesInRequest',
  'nameConstraints', 'signatureAlgorithm',
]);
const KEY_USAGES = new Set([
  'signing', 'digital signature', 'content commitment', 'key encipherment',
  'key agreement', 'data encipherment', 'cert sign', 'crl sign', 'encipher only',
  'decipher only', 'any', 'server auth', 'client auth', 'code signing', 'email protection',
  's/mime', 'ipsec end system', 'ipsec tunnel', 'ipsec user', 'timestamping',
  'ocsp signing', 'microsoft sgc', 'netscape sgc',
]);
const KEY_SIZES = { RSA: [2048, 3072, 4096, 8192], ECDSA: [256, 384, 521], Ed25519: [] };
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

// A Go duration ("720h", "1h30m") in seconds, or NaN.
function goDurationSeconds(text) {
  if (typeof text !== 'string' || !/^(\d+(\.\d+)?(h|m|s|ms))+$/.test(text)) return NaN;
  const unit = { h: 3600, m: 60, s: 1, ms: 0.001 };
  let total = 0;
  for (const [, n, , u] of text.matchAll(/(\d+(\.\d+)?)(h|ms|m|s)/g)) total += n * unit[u];
  return total;
}

function certificateProblems(obj) {
  const p = [];
  const where = describe(obj);
  const spec = obj.spec;
  if (!obj.metadata || !obj.metadata.name) p.push(`${where}: metadata.name is required`);
  if (spec == null || typeof spec !== 'object') return [...p, `${where}: spec is required`];
  for (const field of Object.keys(spec)) {
    if (!CERTIFICATE_SPEC_FIELDS.has(field)) p.push(`${where}: unknown field spec.${field}`);
  }
  if (typeof spec.secretName !== 'string' || !DNS1123_SUBDOMAIN.test(spec.secretName)) {
    p.push(`${where}: spec.secretName is required (a DNS-1123 name)`);
  }
  const ref = spec.issuerRef;
  if (ref == null || typeof ref.name !== 'string' || ref.name === '') {
    p.push(`${where}: spec.issuerRef.name is required`);
  } else {
    if (ref.group !== undefined && ref.group !== 'cert-manager.io') {
      p.push(`${where}: spec.issuerRef.group '${ref.group}' is not cert-manager.io`);
    }
    if (ref.kind !== undefined && !['Issuer', 'ClusterIssuer'].includes(ref.kind)) {
      p.push(`${where}: spec.issuerRef.kind must be Issuer or ClusterIssuer`);
    }
  }
  const names = ['commonName', 'dnsNames', 'uris', 'ipAddresses', 'emailAddresses',
                 'otherNames', 'literalSubject'];
  if (!names.some((n) => spec[n] !== undefined && spec[n].length !== 0)) {
    p.push(`${where}: names nothing (set dnsNames, uris, commonName, ...)`);
  }
  for (const list of ['dnsNames', 'uris', 'ipAddresses', 'emailAddresses', 'usages']) {
    if (spec[list] !== undefined &&
        (!Array.isArray(spec[list]) || spec[list].some((v) => typeof v !== 'string'))) {
      p.push(`${where}: spec.${list} must be a list of strings`);
    }
  }
  if (typeof spec.commonName === 'string' && spec.commonName.length > 64) {
    p.push(`${where}: spec.commonName is longer than 64 characters`);
  }
  for (const usage of spec.usages || []) {
    if (!KEY_USAGES.has(usage)) p.push(`${where}: unknown usage '${usage}'`);
  }
  const duration = spec.duration === undefined ? 90 * 86400 : goDurationSeconds(spec.duration);
  if (Number.isNaN(duration) || duration < 3600) {
    p.push(`${where}: spec.duration must be a Go duration of at least 1h`);
  }
  if (spec.renewBefore !== undefined) {
    const renew = goDurationSeconds(spec.renewBefore);
    if (Number.isNaN(renew) || renew <= 0 || renew >= duration) {
      p.push(`${where}: spec.renewBefore must be a Go duration shorter than spec.duration`);
    }
  }
  const key = spec.privateKey;
  if (key !== undefined) {
    const algorithm = key.algorithm === undefined ? 'RSA' : key.algorithm;
    if (!(algorithm in KEY_SIZES)) {
      p.push(`${where}: spec.privateKey.algorithm must be RSA, ECDSA or Ed25519`);
    } else if (key.size !== undefined && !KEY_SIZES[algorithm].includes(key.size)) {
      p.push(`${where}: spec.privateKey.size ${key.size} does not fit ${algorithm}`);
    }
    if (key.rotationPolicy !== undefined && !['Never', 'Always'].includes(key.rotationPolicy)) {
      p.push(`${where}: spec.privateKey.rotationPolicy must be Never or Always`);
    }
    if (key.encoding !== undefined && !['PKCS1', 'PKCS8'].includes(key.encoding)) {
      p.push(`${where}: spec.privateKey.encoding must be PKCS1 or PKCS8`);
    }
  }
  return p;
}

// A CA ClusterIssuer or Issuer (the only issuer type offkey's manifests use).
function caIssuerProblems(obj) {
  const where = describe(obj);
  const spec = obj.spec || {};
  const p = [];
  if (!obj.metadata || !obj.metadata.name) p.push(`${where}: metadata.name is required`);
  if (Object.keys(spec).join() !== 'ca') p.push(`${where}: spec must hold exactly one issuer type, ca`);
  if (!spec.ca || typeof spec.ca.secretName !== 'string' || !DNS1123_SUBDOMAIN.test(spec.ca.secretName)) {
    p.push(`${where}: spec.ca.secretName is required (a DNS-1123 name)`);
  }
  return p;
}

const POLICY_SPEC_FIELDS = new Set(['selector', 'allowed', 'constraints', 'plugins']);
const POLICY_ALLOWED_FIELDS = new Set([
  'commonName', 'dnsNames', 'ipAddresses', 'uris', 'emailAddresses', 'isCA', 'usages',
  'subject',
]);

// approver-policy's CertificateRequestPolicy, field by field against its API reference.
function certificateRequestPolicyProblems(obj) {
  const where = describe(obj);
  const spec = obj.spec;
  const p = [];
  if (obj.metadata && obj.metadata.namespace) p.push(`${where}: is cluster-scoped; drop metadata.namespace`);
  if (spec == null || typeof spec !== 'object') return [...p, `${where}: spec is required`];
  for (const field of Object.keys(spec)) {
    if (!POLICY_SPEC_FIELDS.has(field)) p.push(`${where}: unknown field spec.${field}`);
  }
  const selector = spec.selector;
  if (selector == null || (selector.issuerRef == null && selector.namespace == null)) {
    p.push(`${where}: spec.selector needs issuerRef or namespace`);
  }
  for (const field of Object.keys(spec.allowed || {})) {
    if (!POLICY_ALLOWED_FIELDS.has(field)) p.push(`${where}: unknown field spec.allowed.${field}`);
  }
  const allowed = spec.allowed || {};
  for (const list of ['dnsNames', 'ipAddresses', 'uris', 'emailAddresses']) {
    const f = allowed[list];
    if (f === undefined) continue;
    if (f.values !== undefined &&
        (!Array.isArray(f.values) || f.values.some((v) => typeof v !== 'string'))) {
      p.push(`${where}: spec.allowed.${list}.values must be a list of strings`);
    }
  }
  for (const usage of allowed.usages || []) {
    if (!KEY_USAGES.has(usage)) p.push(`${where}: unknown usage '${usage}'`);
  }
  const c = spec.constraints || {};
  for (const d of ['minDuration', 'maxDuration']) {
    if (c[d] !== undefined && Number.isNaN(goDurationSeconds(c[d]))) {
      p.push(`${where}: spec.constraints.${d} must be a Go duration`);
    }
  }
  return p;
}

function certManagerProblems(objects) {
  const problems = [];
  for (const obj of objects) {
    if (obj.apiVersion === APPROVER_POLICY && obj.kind === 'CertificateRequestPolicy') {
      problems.push(...certificateRequestPolicyProblems(obj));
      continue;
    }
    if (obj.apiVersion === APPROVER_POLICY) {
      problems.push(`${describe(obj)}: no check for approver-policy kind ${obj.kind}`);
    }
    if (obj.apiVersion !== CERT_MANAGER) continue;
    if (obj.kind === 'Certificate') {
      problems.push(...certificateProblems(obj));
    } else if (obj.kind === 'ClusterIssuer' || obj.kind === 'Issuer') {
      problems.push(...caIssuerProblems(obj));
    } else {
      problems.push(`${describe(obj)}: no check for cert-manager kind ${obj.kind}`);
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------------------
// Issuance: what offkey's CA may sign, and for whom
//
// offkeyd believes every client certificate its CA signs, so the CA must sign for each
// namespace only names of that namespace: SPIFFE IDs under spiffe://TD/ns/NS/, and DNS
// names only for offkeyd's own Services, only in offkeyd's namespace. approver-policy
// enforces it: a policy per namespace (selected by name, never by label) opened by a
// Role and RoleBinding in that namespace alone.

const OFFKEY_ISSUER = { group: 'cert-manager.io', kind: 'ClusterIssuer', name: 'offkey-ca' };
const ISSUANCE_DEFAULTS = {
  issuer: OFFKEY_ISSUER, caSecret: 'offkey-ca-keypair', trustDomain: 'cluster.local',
  serverNamespace: 'offkey',
};

function isOffkeyIssuer(ref, issuer) {
  return ref != null && ref.name === issuer.name && (ref.kind || 'Issuer') === issuer.kind &&
    (ref.group || 'cert-manager.io') === issuer.group;
}

// approver-policy's wildcard: '*' matches any run of characters.
function wildcardMatches(pattern, value) {
  const re = pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*');
  return new RegExp(`^${re}$`).test(value);
}

// Problems with one name (a URI, DNS name or CN, possibly a policy pattern with '*')
// that namespace `ns` would obtain.
function nameProblems(where, kind, name, ns, o) {
  const spiffeNs = `spiffe://${o.trustDomain}/ns/${ns}/`;
  if (kind === 'uri') {
    const star = name.indexOf('*');
    if (!name.startsWith(spiffeNs) || (star >= 0 && star < spiffeNs.length)) {
      return [`${where}: URI ${name} lies outside namespace ${ns}'s SPIFFE path ${spiffeNs}`];
    }
    return [];
  }
  // DNS names and CNs: offkeyd's own Services, in offkeyd's namespace only.
  const svc = new RegExp(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?\\.${ns}\\.svc(\\.cluster\\.local)?$`);
  if (ns !== o.serverNamespace || name.includes('*') || !svc.test(name)) {
    return [`${where}: ${kind} ${name} may be granted only to offkeyd's Services in namespace ` +
            `${o.serverNamespace}, not in ${ns}`];
  }
  return [];
}

function issuanceProblems(objects, options = {}) {
  const o = { ...ISSUANCE_DEFAULTS, ...options };
  const problems = [];
  const policies = objects.filter((x) => x.apiVersion === APPROVER_POLICY &&
    x.kind === 'CertificateRequestPolicy' && isOffkeyIssuer(((x.spec || {}).selector || {}).issuerRef, o.issuer));
  const policyNamespace = new Map();  // policy name -> its one namespace
  for (const policy of policies) {
    const where = describe(policy);
    const selector = policy.spec.selector || {};
    const names = (selector.namespace || {}).matchNames || [];
    if (names.length !== 1 || (selector.namespace || {}).matchLabels !== undefined) {
      problems.push(`${where}: must select exactly one namespace by name (namespace.matchNames), ` +
                    'never by label or not at all');
      continue;
    }
    const ns = names[0];
    policyNamespace.set(policy.metadata.name, ns);
    const allowed = policy.spec.allowed || {};
    for (const v of (allowed.uris || {}).values || []) problems.push(...nameProblems(where, 'uri', v, ns, o));
    for (const v of (allowed.dnsNames || {}).values || []) problems.push(...nameProblems(where, 'DNS name', v, ns, o));
    if (allowed.commonName && allowed.commonName.value !== undefined) {
      problems.push(...nameProblems(where, 'CN', allowed.commonName.value, ns, o));
    }
    for (const f of ['ipAddresses', 'emailAddresses', 'subject']) {
      if (allowed[f] !== undefined) problems.push(`${where}: allows ${f}; offkey identities need none`);
    }
    if (allowed.isCA) problems.push(`${where}: allows CA certificates`);
    if ((allowed.usages || []).some((u) => ['cert sign', 'any'].includes(u))) {
      problems.push(`${where}: allows signing certificates`);
    }
  }
  // Who may use the policies: a Role naming them, bound in the policy's own namespace.
  const useRules = (rules) => (rules || []).filter((r) =>
    (r.apiGroups || []).some((g) => g === 'policy.cert-manager.io' || g === '*') &&
    (r.resources || []).some((res) => res === 'certificaterequestpolicies' || res === '*') &&
    (r.verbs || []).some((v) => v === 'use' || v === '*'));
  for (const role of objects.filter((x) => x.kind === 'ClusterRole')) {
    if (useRules(role.rules).length > 0) {
      problems.push(`${describe(role)}: grants use of approver policies cluster-wide; use a Role in ` +
                    'the namespace of the policy');
    }
  }
  const opened = new Set();  // "ns/policy" a RoleBinding opens
  for (const binding of objects.filter((x) => x.kind === 'RoleBinding' || x.kind === 'ClusterRoleBinding')) {
    const ref = binding.roleRef || {};
    const ns = binding.metadata.namespace;
    const role = objects.find((x) => x.kind === ref.kind && x.metadata.name === ref.name &&
      (ref.kind === 'ClusterRole' || x.metadata.namespace === ns));
    if (!role) continue;
    for (const rule of useRules(role.rules)) {
      if (binding.kind === 'ClusterRoleBinding') {
        problems.push(`${describe(binding)}: opens approver policies in every namespace`);
        continue;
      }
      if (!rule.resourceNames || rule.resourceNames.length === 0) {
        problems.push(`${describe(role)}: grants use of every approver policy; name them (resourceNames)`);
        continue;
      }
      for (const name of rule.resourceNames) {
        if (policyNamespace.has(name) && policyNamespace.get(name) !== ns) {
          problems.push(`${describe(binding)}: opens policy ${name} of namespace ` +
                        `${policyNamespace.get(name)} in namespace ${ns}`);
        }
        opened.add(`${ns}/${name}`);
      }
    }
  }
  // Every Certificate from offkey's CA: names of its own namespace, a SPIFFE ID for a
  // client, and a policy of that namespace that allows all of it.
  for (const cert of objects.filter((x) => x.apiVersion === CERT_MANAGER && x.kind === 'Certificate')) {
    const spec = cert.spec || {};
    if (!isOffkeyIssuer(spec.issuerRef, o.issuer)) continue;
    const where = describe(cert);
    const ns = cert.metadata.namespace;
    const uris = spec.uris || [];
    const dns = spec.dnsNames || [];
    for (const u of uris) problems.push(...nameProblems(where, 'uri', u, ns, o));
    for (const d of dns) problems.push(...nameProblems(where, 'DNS name', d, ns, o));
    if (spec.commonName !== undefined) problems.push(...nameProblems(where, 'CN', spec.commonName, ns, o));
    if ((spec.usages || []).includes('client auth') &&
        (uris.length !== 1 || !uris[0].startsWith('spiffe://'))) {
      problems.push(`${where}: a client certificate carries exactly one SPIFFE ID (uris), its identity`);
    }
    const fits = policies.some((policy) => {
      const allowed = policy.spec.allowed || {};
      const all = (list, field) => list.every((v) =>
        ((allowed[field] || {}).values || []).some((pattern) => wildcardMatches(pattern, v)));
      return policyNamespace.get(policy.metadata.name) === ns &&
        opened.has(`${ns}/${policy.metadata.name}`) &&
        all(uris, 'uris') && all(dns, 'dnsNames') &&
        (spec.commonName === undefined ||
         (allowed.commonName && wildcardMatches(allowed.commonName.value || '', spec.commonName))) &&
        (spec.usages || []).every((u) => (allowed.usages || []).includes(u));
    });
    if (!fits) {
      problems.push(`${where}: no approver policy of namespace ${ns} (selected by name and bound ` +
                    `there) allows it, so ${o.issuer.kind} ${o.issuer.name} would never sign it`);
    }
  }
  // No second issuer over offkey's CA key: its requests would bypass the policies above.
  for (const issuer of objects.filter((x) => x.apiVersion === CERT_MANAGER &&
       (x.kind === 'ClusterIssuer' || x.kind === 'Issuer'))) {
    if (((issuer.spec || {}).ca || {}).secretName === o.caSecret &&
        !(issuer.kind === o.issuer.kind && issuer.metadata.name === o.issuer.name)) {
      problems.push(`${describe(issuer)}: signs with offkey's CA key ${o.caSecret} outside its policies`);
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------------------
// Pods: security, resources, probes

const WORKLOAD_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job']);

// [{owner, pod (PodSpec)}] for every object that runs pods.
function podSpecs(objects) {
  const specs = [];
  for (const obj of objects) {
    if (obj.kind === 'Pod') specs.push({ owner: obj, pod: obj.spec || {} });
    if (WORKLOAD_KINDS.has(obj.kind)) {
      specs.push({ owner: obj, pod: ((obj.spec || {}).template || {}).spec || {} });
    }
    if (obj.kind === 'CronJob') {
      const job = ((obj.spec || {}).jobTemplate || {}).spec || {};
      specs.push({ owner: obj, pod: (job.template || {}).spec || {} });
    }
  }
  return specs;
}

// [{where, container, pod, init, longRunning}] for every container and init container.
function containers(objects) {
  const all = [];
  for (const { owner, pod } of podSpecs(objects)) {
    for (const c of pod.initContainers || []) {
      all.push({ where: `${describe(owner)} init container ${c.name}`, container: c, pod,
                 init: true, longRunning: c.restartPolicy === 'Always' });
    }
    for (const c of pod.containers || []) {
      const batch = owner.kind === 'Job' || owner.kind === 'CronJob';
      all.push({ where: `${describe(owner)} container ${c.name}`, container: c, pod,
                 init: false, longRunning: !batch });
    }
  }
  return all;
}

// The container's setting, else the pod's (Kubernetes' own precedence).
function effective(c, pod, field) {
  const own = (c.securityContext || {})[field];
  return own !== undefined ? own : (pod.securityContext || {})[field];
}

function nonRootProblems(objects) {
  const problems = [];
  for (const { where, container, pod } of containers(objects)) {
    if (effective(container, pod, 'runAsNonRoot') !== true) {
      problems.push(`${where}: runAsNonRoot is not true`);
    }
    const uid = effective(container, pod, 'runAsUser');
    if (!Number.isInteger(uid) || uid <= 0) {
      problems.push(`${where}: runAsUser is not a numeric non-root UID (is ${uid})`);
    }
  }
  return problems;
}

function readOnlyRootProblems(objects) {
  return containers(objects)
    .filter(({ container }) => (container.securityContext || {}).readOnlyRootFilesystem !== true)
    .map(({ where }) => `${where}: readOnlyRootFilesystem is not true`);
}

function capabilityProblems(objects) {
  const problems = [];
  for (const { where, container } of containers(objects)) {
    const caps = (container.securityContext || {}).capabilities || {};
    if (!(caps.drop || []).includes('ALL')) problems.push(`${where}: does not drop ALL capabilities`);
    if ((caps.add || []).length > 0) problems.push(`${where}: adds capabilities ${caps.add}`);
  }
  return problems;
}

function privilegeProblems(objects) {
  const problems = [];
  for (const { where, container, pod } of containers(objects)) {
    const sc = container.securityContext || {};
    if (sc.allowPrivilegeEscalation !== false) {
      problems.push(`${where}: allowPrivilegeEscalation is not false`);
    }
    if (sc.privileged === true) problems.push(`${where}: is privileged`);
    const seccomp = effective(container, pod, 'seccompProfile') || {};
    if (seccomp.type !== 'RuntimeDefault' && seccomp.type !== 'Localhost') {
      problems.push(`${where}: seccompProfile is not RuntimeDefault`);
    }
  }
  for (const { owner, pod } of podSpecs(objects)) {
    for (const flag of ['hostNetwork', 'hostPID', 'hostIPC']) {
      if (pod[flag] === true) problems.push(`${describe(owner)}: ${flag} is set`);
    }
  }
  return problems;
}

function resourceProblems(objects) {
  const problems = [];
  for (const { where, container } of containers(objects)) {
    const r = container.resources || {};
    for (const kind of ['requests', 'limits']) {
      for (const res of ['cpu', 'memory']) {
        if ((r[kind] || {})[res] === undefined) problems.push(`${where}: no ${kind}.${res}`);
      }
    }
  }
  return problems;
}

function probeProblems(objects) {
  const problems = [];
  for (const { where, container, longRunning } of containers(objects)) {
    if (!longRunning) continue;
    for (const probe of ['readinessProbe', 'livenessProbe']) {
      if (container[probe] == null) problems.push(`${where}: no ${probe}`);
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------------------
// Secrets stay outside the manifests

// Built from parts so that this file holds no PEM private key marker itself.
const PRIVATE_KEY_PEM = new RegExp('-----BEGIN [A-Z0-9 ]*' + 'PRIV' + 'ATE KEY-----');
// A name that says it holds a PIN or a password: PIN, SO_PIN, hsm-pin, OFFKEY_PIN, ...
const SECRET_NAME = /(^|[^a-z0-9])(so[-_]?)?pin([^a-z0-9]|$)|passw(or)?d|passphrase/i;
// Inline PINs in offkeyd's own configuration or a PKCS#11 URI.
const INLINE_PIN = /pin-value\s*=|^\s*pin_env\s*:|pin-source\s*=\s*env/im;

function inlineSecretProblems(objects) {
  const problems = [];
  for (const obj of objects) {
    if (obj.kind !== 'Secret') continue;
    for (const field of ['data', 'stringData']) {
      if (obj[field] != null && Object.keys(obj[field]).length > 0) {
        problems.push(`${describe(obj)}: has inline ${field} (Secrets come from ` +
                      'cert-manager or the operator, not from the manifests)');
      }
    }
  }
  return problems;
}

function pinAndKeyProblems(objects) {
  const problems = [];
  for (const obj of objects) {
    if (obj.kind !== 'ConfigMap') continue;
    const entries = Object.entries(obj.data || {});
    for (const [k, v] of Object.entries(obj.binaryData || {})) {
      entries.push([k, Buffer.from(String(v), 'base64').toString('latin1')]);
    }
    for (const [key, value] of entries) {
      const where = `${describe(obj)} key ${key}`;
      if (SECRET_NAME.test(key)) problems.push(`${where}: its name says PIN or password`);
      if (PRIVATE_KEY_PEM.test(String(value))) problems.push(`${where}: holds a PEM private key`);
      if (INLINE_PIN.test(String(value))) problems.push(`${where}: passes a PIN inline or by env`);
    }
  }
  for (const { where, container } of containers(objects)) {
    for (const env of container.env || []) {
      if (SECRET_NAME.test(env.name)) {
        problems.push(`${where}: environment variable ${env.name} looks like a PIN ` +
                      '(give PINs as files: hsm.pin_file)');
      }
      if (env.value !== undefined && (PRIVATE_KEY_PEM.test(env.value) || INLINE_PIN.test(env.value))) {
        problems.push(`${where}: environment variable ${env.name} holds a key or a PIN`);
      }
    }
    for (const arg of [...(container.command || []), ...(container.args || [])]) {
      if (/--pin_env|pin-value=/.test(arg)) problems.push(`${where}: PIN from the command line or env: ${arg}`);
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------------------
// offkeyd wiring: config, probes, mounts

const OFFKEYD_CONFIG_KEY = 'offkeyd.textproto';

// The offkeyd containers: image named offkeyd (before or after an images: rewrite).
function offkeydContainers(objects) {
  return containers(objects).filter(({ container, init }) =>
    !init && /(^|\/)offkeyd(:|@|$)/.test(container.image || ''));
}

function configMaps(objects) {
  return objects.filter((o) => o.kind === 'ConfigMap');
}

// One field of a text-format config: its first `name: "value"`, or undefined.
function textprotoString(text, name) {
  const m = new RegExp(`^\\s*${name}\\s*:\\s*"([^"]*)"`, 'm').exec(text);
  return m ? m[1] : undefined;
}

// The offkeyd containers read a config from a mounted ConfigMap; the files it names
// (TLS, PIN) sit in mounted Secret volumes; the PIN is a file.
function offkeydWiringProblems(objects) {
  const problems = [];
  const offkeyd = offkeydContainers(objects);
  if (offkeyd.length === 0) return ['no offkeyd container in the rendering'];
  for (const { where, container, pod } of offkeyd) {
    const volumes = new Map((pod.volumes || []).map((v) => [v.name, v]));
    const mounts = (container.volumeMounts || []).map((m) => ({ ...m, volume: volumes.get(m.name) }));
    const mountOf = (file) => mounts.find((m) => file.startsWith(m.mountPath.replace(/\/?$/, '/')));
    const configArg = [...(container.command || []), ...(container.args || [])]
      .find((a) => a.startsWith('--config='));
    if (!configArg) {
      problems.push(`${where}: no --config= argument`);
      continue;
    }
    const configPath = configArg.slice('--config='.length);
    const configMount = mountOf(configPath);
    if (!configMount || !configMount.volume || !configMount.volume.configMap) {
      problems.push(`${where}: ${configPath} is not in a mounted ConfigMap`);
      continue;
    }
    if (configMount.subPath) problems.push(`${where}: the config is mounted with subPath (never updated)`);
    const cmName = configMount.volume.configMap.name;
    const cm = configMaps(objects).find((c) => c.metadata.name === cmName);
    const key = path.posix.relative(configMount.mountPath, configPath);
    if (!cm || !(cm.data || {})[key]) {
      problems.push(`${where}: ConfigMap ${cmName} with key ${key} is not in the rendering`);
      continue;
    }
    const text = cm.data[key];
    if (textprotoString(text, 'pin_env') !== undefined) problems.push(`${where}: config sets hsm.pin_env`);
    const files = {
      'hsm.pin_file': textprotoString(text, 'pin_file'),
      'tls.cert_file': textprotoString(text, 'cert_file'),
      'tls.key_file': textprotoString(text, 'key_file'),
      'tls.client_ca_file': textprotoString(text, 'client_ca_file'),
    };
    for (const [field, file] of Object.entries(files)) {
      if (file === undefined) {
        problems.push(`${where}: config has no ${field}`);
        continue;
      }
      const m = mountOf(file);
      if (!m || !m.volume || !m.volume.secret) {
        problems.push(`${where}: ${field} ${file} is not in a mounted Secret volume`);
      } else if (m.subPath) {
        problems.push(`${where}: ${field} is mounted with subPath (rotation would not reach it)`);
      } else if (m.volume.secret.items &&
                 !m.volume.secret.items.some((i) => i.path === path.posix.relative(m.mountPath, file))) {
        problems.push(`${where}: ${field} ${file} is not among the Secret's mounted items`);
      }
    }
  }
  return problems;
}

// Readiness on /readyz and liveness on /healthz, on offkeyd's metrics_address port.
function offkeydProbeProblems(objects) {
  const problems = [];
  for (const { where, container, pod } of offkeydContainers(objects)) {
    const ports = new Map((container.ports || []).map((p) => [p.name, p.containerPort]));
    const configArg = (container.args || []).find((a) => a.startsWith('--config=')) || '';
    const configFile = path.posix.basename(configArg.slice('--config='.length));
    const mount = (container.volumeMounts || []).find((m) =>
      configArg.slice('--config='.length).startsWith(`${m.mountPath}/`));
    const volume = mount && (pod.volumes || []).find((v) => v.name === mount.name);
    const cm = volume && volume.configMap &&
      configMaps(objects).find((c) => c.metadata.name === volume.configMap.name);
    const metrics = cm && textprotoString((cm.data || {})[configFile] || '', 'metrics_address');
    const metricsPort = metrics ? Number(metrics.split(':').pop()) : 9090;  // offkeyd's default
    const expect = { readinessProbe: '/readyz', livenessProbe: '/healthz', startupProbe: '/healthz' };
    for (const [probe, want] of Object.entries(expect)) {
      const p = container[probe];
      if (p == null) {
        if (probe !== 'startupProbe') problems.push(`${where}: no ${probe}`);
        continue;
      }
      if (!p.httpGet) {
        problems.push(`${where}: ${probe} is not an HTTP GET on offkeyd's health port`);
        continue;
      }
      if (p.httpGet.path !== want) {
        problems.push(`${where}: ${probe} asks ${p.httpGet.path}; offkeyd serves ${want}`);
      }
      const port = typeof p.httpGet.port === 'string' ? ports.get(p.httpGet.port) : p.httpGet.port;
      if (port !== metricsPort) {
        problems.push(`${where}: ${probe} goes to port ${p.httpGet.port} (${port}), ` +
                      `offkeyd's metrics_address port is ${metricsPort}`);
      }
      if ((p.httpGet.scheme || 'HTTP') !== 'HTTP') problems.push(`${where}: ${probe} is not plain HTTP`);
    }
  }
  return problems;
}

// Every offkeyd.textproto in the rendered ConfigMaps, written to `dir`: [{name, file}].
function writeOffkeydConfigs(objects, dir) {
  const written = [];
  for (const cm of configMaps(objects)) {
    const text = (cm.data || {})[OFFKEYD_CONFIG_KEY];
    if (text === undefined) continue;
    const file = path.join(dir, `${cm.metadata.name}.${OFFKEYD_CONFIG_KEY}`);
    fs.writeFileSync(file, text);
    written.push({ name: `ConfigMap ${cm.metadata.name}`, file });
  }
  return written;
}

// protoc --encode=offkey.v1.ServerConfig accepts each file.
function protocProblems(configs, protoDir, protoc = 'protoc') {
  const problems = [];
  for (const { name, file } of configs) {
    const r = childProcess.spawnSync(protoc, [
      `--proto_path=${protoDir}`, '--proto_path=/usr/include',
      '--encode=offkey.v1.ServerConfig', 'offkey/v1/config.proto',
    ], { input: fs.readFileSync(file), maxBuffer: 16 << 20 });
    if (r.error) problems.push(`${name}: cannot run ${protoc}: ${r.error.message}`);
    else if (r.status !== 0) problems.push(`${name}: protoc --encode refused it: ${r.stderr}`);
  }
  return problems;
}

// offkeyd's own config loader (offkeyd_config_check) accepts each file as complete.
function configLoaderProblems(configs, checker) {
  if (configs.length === 0) return [];
  const r = childProcess.spawnSync(checker, configs.map((c) => c.file), { encoding: 'utf8' });
  if (r.error) return [`cannot run ${checker}: ${r.error.message}`];
  return r.status === 0 ? [] : [`offkeyd's config loader refused:\n${r.stdout}${r.stderr}`];
}

// ---------------------------------------------------------------------------------------
// Topology: spread, Services, PDB, NetworkPolicy, HPA

function find(objects, kind, name) {
  return objects.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
}

function selects(selector, labels) {
  return selector != null && Object.keys(selector).length > 0 &&
    Object.entries(selector).every(([k, v]) => (labels || {})[k] === v);
}

function offkeydDeployment(objects) {
  return objects.find((o) => o.kind === 'Deployment' && o.metadata.name === 'offkeyd');
}

function podLabels(deployment) {
  return ((deployment.spec.template || {}).metadata || {}).labels || {};
}

// Replicas kept apart by node, services and budget over the same pods.
function availabilityProblems(objects, { singleReplica = false } = {}) {
  const problems = [];
  const d = offkeydDeployment(objects);
  if (!d) return ['no Deployment offkeyd'];
  const labels = podLabels(d);
  const pod = d.spec.template.spec;
  const hpa = find(objects, 'HorizontalPodAutoscaler');
  if (singleReplica) {
    if (d.spec.replicas !== 1) problems.push('Deployment offkeyd: replicas is not 1');
    if (hpa) problems.push(`${describe(hpa)}: a single-replica rendering keeps an autoscaler`);
  } else {
    const spread = (pod.topologySpreadConstraints || []).some((t) =>
      t.topologyKey === 'kubernetes.io/hostname' && selects(t.labelSelector.matchLabels, labels));
    const anti = ((pod.affinity || {}).podAntiAffinity || {});
    const antiTerms = [...(anti.requiredDuringSchedulingIgnoredDuringExecution || []),
                       ...(anti.preferredDuringSchedulingIgnoredDuringExecution || [])
                         .map((t) => t.podAffinityTerm)];
    const antiByNode = antiTerms.some((t) => t.topologyKey === 'kubernetes.io/hostname');
    if (!spread && !antiByNode) problems.push('Deployment offkeyd: replicas are not spread across nodes');
    if (!hpa) {
      problems.push('no HorizontalPodAutoscaler');
    } else {
      if (hpa.apiVersion !== 'autoscaling/v2') problems.push(`${describe(hpa)}: not autoscaling/v2`);
      const ref = hpa.spec.scaleTargetRef || {};
      if (ref.kind !== 'Deployment' || ref.name !== 'offkeyd') {
        problems.push(`${describe(hpa)}: does not scale Deployment offkeyd`);
      }
      if (!(hpa.spec.minReplicas >= 2)) problems.push(`${describe(hpa)}: minReplicas below 2`);
      if (!(hpa.spec.maxReplicas >= hpa.spec.minReplicas)) {
        problems.push(`${describe(hpa)}: maxReplicas below minReplicas`);
      }
    }
    if (d.spec.replicas !== undefined) {
      problems.push('Deployment offkeyd: sets replicas, which every apply would force over the HPA');
    }
  }
  const pdb = find(objects, 'PodDisruptionBudget');
  if (!pdb || !selects(pdb.spec.selector.matchLabels, labels)) {
    problems.push('no PodDisruptionBudget over the offkeyd pods');
  } else if (pdb.spec.minAvailable !== undefined && singleReplica) {
    problems.push(`${describe(pdb)}: minAvailable would block every drain of one replica`);
  }
  const services = objects.filter((o) => o.kind === 'Service' && selects(o.spec.selector, labels));
  if (!services.some((s) => s.spec.clusterIP !== 'None')) problems.push('no ClusterIP Service for offkeyd');
  const headless = services.find((s) => s.spec.clusterIP === 'None');
  if (!headless) {
    problems.push('no headless Service (clusterIP: None) for client-side balancing');
  } else if (headless.spec.publishNotReadyAddresses === true) {
    problems.push(`${describe(headless)}: publishes pods that are not ready`);
  }
  return problems;
}

// Ingress only from labelled namespaces, and only to offkeyd's named ports.
function networkPolicyProblems(objects) {
  const problems = [];
  const d = offkeydDeployment(objects);
  if (!d) return ['no Deployment offkeyd'];
  const np = objects.find((o) => o.kind === 'NetworkPolicy' &&
    selects(o.spec.podSelector.matchLabels, podLabels(d)));
  if (!np) return ['no NetworkPolicy over the offkeyd pods'];
  const where = describe(np);
  if (!(np.spec.policyTypes || []).includes('Ingress')) problems.push(`${where}: does not police Ingress`);
  const container = d.spec.template.spec.containers.find((c) => c.name === 'offkeyd');
  const known = new Map((container.ports || []).map((p) => [p.name, p.containerPort]));
  const admitted = new Map();  // port name -> [namespace selectors]
  for (const [i, rule] of (np.spec.ingress || []).entries()) {
    if (!rule.from || rule.from.length === 0) problems.push(`${where}: ingress[${i}] admits every source`);
    if (!rule.ports || rule.ports.length === 0) problems.push(`${where}: ingress[${i}] admits every port`);
    for (const peer of rule.from || []) {
      const labels = (peer.namespaceSelector || {}).matchLabels || {};
      if (peer.ipBlock || peer.podSelector || !peer.namespaceSelector ||
          Object.keys(labels).length === 0) {
        problems.push(`${where}: ingress[${i}] admits a source that is not a labelled namespace`);
      }
    }
    for (const port of rule.ports || []) {
      if (!known.has(port.port)) problems.push(`${where}: ingress[${i}] port ${port.port} is not an offkeyd port`);
      const list = admitted.get(port.port) || [];
      list.push(...(rule.from || []).map((p) => JSON.stringify((p.namespaceSelector || {}).matchLabels)));
      admitted.set(port.port, list);
    }
  }
  const wants = {
    grpc: ['{"offkey.dev/role":"terminator"}', '{"offkey.dev/role":"operator"}'],
    admin: ['{"offkey.dev/role":"operator"}'],
    metrics: ['{"kubernetes.io/metadata.name":"monitoring"}'],
  };
  for (const [port, sources] of Object.entries(wants)) {
    const got = admitted.get(port) || [];
    for (const s of sources) if (!got.includes(s)) problems.push(`${where}: port ${port} not open to ${s}`);
    for (const s of got) if (!sources.includes(s)) problems.push(`${where}: port ${port} open to ${s}`);
  }
  return problems;
}

// Every Secret a pod mounts is made by a cert-manager Certificate in the same rendering
// or is one the operator creates (`fromOperator`): nothing else may be expected.
function secretSourceProblems(objects, fromOperator) {
  const problems = [];
  const made = new Set(objects.filter((o) => o.apiVersion === CERT_MANAGER && o.kind === 'Certificate')
    .map((c) => `${c.metadata.namespace}/${c.spec.secretName}`));
  for (const { owner, pod } of podSpecs(objects)) {
    const ns = owner.metadata.namespace;
    for (const v of pod.volumes || []) {
      if (!v.secret) continue;
      const name = `${ns}/${v.secret.secretName}`;
      if (!made.has(name) && !fromOperator.includes(name)) {
        problems.push(`${describe(owner)}: mounts Secret ${name}, which neither a Certificate ` +
                      'here nor the operator (deploy/README.md) provides');
      }
    }
  }
  return problems;
}

module.exports = {
  render, describe, modelFor, schemaProblems, certManagerProblems, certificateProblems,
  issuanceProblems, wildcardMatches,
  podSpecs, containers, nonRootProblems, readOnlyRootProblems, capabilityProblems,
  privilegeProblems, resourceProblems, probeProblems, inlineSecretProblems,
  pinAndKeyProblems, offkeydContainers, offkeydWiringProblems, offkeydProbeProblems,
  writeOffkeydConfigs, protocProblems, configLoaderProblems, availabilityProblems,
  networkPolicyProblems, secretSourceProblems, textprotoString, goDurationSeconds,
  PRIVATE_KEY_PEM,
};
