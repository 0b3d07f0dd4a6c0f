import { expect } from 'chai';
import { Command } from 'commander';
import { X509Certificate } from 'node:crypto';
import type { ICertificate } from '@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate';
import type { IIssuer } from '@kubernetes-models/cert-manager/cert-manager.io/v1/Issuer';
import type { IValidatingWebhookConfiguration } from 'kubernetes-models/admissionregistration.k8s.io/v1/ValidatingWebhookConfiguration';
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IPodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import type { IClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import type { IClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import type { IRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import type { IRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import type { ISecret } from 'kubernetes-models/v1/Secret';
import type { IService } from 'kubernetes-models/v1/Service';
import type { IServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { commandRegistrations } from '../../src/cli/commands.ts';
import {
  renderOverlays,
  webhookServiceDnsName,
  withWorkDir,
  type ManifestDocument,
  type RenderedOverlays,
} from './render.ts';

// What the rendered overlays must get right beyond their schemas: the pieces refer to each other correctly, the
// pods are hardened, the webhook cannot block what it must not, RBAC has no wildcard, and every container argument
// is a flag the CLI really has. The schema test has validated every object, so reading them as these types is safe.

interface Kinds {
  Deployment: IDeployment;
  ServiceAccount: IServiceAccount;
  Service: IService;
  Secret: ISecret;
  PodDisruptionBudget: IPodDisruptionBudget;
  ValidatingWebhookConfiguration: IValidatingWebhookConfiguration;
  ClusterRole: IClusterRole;
  ClusterRoleBinding: IClusterRoleBinding;
  Role: IRole;
  RoleBinding: IRoleBinding;
  Certificate: ICertificate;
  Issuer: IIssuer;
}

const NAMESPACE = 'kmm-preflight';

function objects<K extends keyof Kinds>(documents: readonly ManifestDocument[], kind: K): Kinds[K][] {
  return documents.filter((d) => d.object.kind === kind).map((d) => d.object as unknown as Kinds[K]);
}

function one<K extends keyof Kinds>(documents: readonly ManifestDocument[], kind: K, name: string): Kinds[K] {
  const found = objects(documents, kind).filter((o) => o.metadata?.name === name);
  expect(found, `${kind} ${name}`).to.have.length(1);
  return found[0]!;
}

/** The value, failing the test with `what` when it is missing. */
function present<T>(value: T | undefined | null, what: string): T {
  expect(value, what).to.not.equal(undefined);
  expect(value, what).to.not.equal(null);
  return value as T;
}

function selects(
  selector: Record<string, string> | undefined,
  labels: Record<string, string> | undefined,
): boolean {
  return Object.entries(present(selector, 'selector')).every(([key, value]) => labels?.[key] === value);
}

function webhookPodSpec(documents: readonly ManifestDocument[]) {
  return present(one(documents, 'Deployment', 'webhook').spec?.template.spec, 'webhook pod spec');
}

function webhookSecretName(documents: readonly ManifestDocument[]): string {
  const volume = (webhookPodSpec(documents).volumes ?? []).find((v) => v.secret !== undefined);
  return present(volume?.secret?.secretName, 'the webhook pod mounts a Secret');
}

describe('manifests: design', function () {
  this.timeout(60_000);
  let rendered: RenderedOverlays;
  let overlays: [string, ManifestDocument[]][];

  before(async () => {
    rendered = await withWorkDir(renderOverlays);
    overlays = [
      ['default', rendered.default],
      ['self-signed', rendered.selfSigned],
    ];
  });

  it('puts every namespaced object in kmm-preflight (except the runner Events Role in default)', () => {
    const clusterScoped = [
      'Namespace',
      'ClusterRole',
      'ClusterRoleBinding',
      'ValidatingWebhookConfiguration',
      'CustomResourceDefinition',
    ];
    for (const [, documents] of overlays) {
      for (const { object } of documents) {
        const { kind } = object as { kind: string };
        const { name, namespace } = object.metadata as { name: string; namespace?: string };
        if (clusterScoped.includes(kind)) expect(namespace, name).to.equal(undefined);
        else if (name === 'kmm-preflight-runner-events') expect(namespace).to.equal('default');
        else expect(namespace, `${kind} ${name}`).to.equal(NAMESPACE);
      }
    }
  });

  it('runs two hardened replicas of each Deployment under its own ServiceAccount', () => {
    for (const [, documents] of overlays) {
      for (const name of ['runner', 'webhook']) {
        const spec = present(one(documents, 'Deployment', name).spec, `${name} spec`);
        const pod = present(spec.template.spec, `${name} pod spec`);
        expect(spec.replicas).to.equal(2);
        expect(selects(spec.selector.matchLabels, spec.template.metadata?.labels)).to.equal(true);
        expect(pod.serviceAccountName).to.equal(name);
        expect(one(documents, 'ServiceAccount', name).automountServiceAccountToken).to.equal(false);
        expect(pod.automountServiceAccountToken, 'both talk to the API server').to.equal(true);
        expect(pod.securityContext).to.deep.include({
          runAsNonRoot: true,
          seccompProfile: { type: 'RuntimeDefault' },
        });
        expect(pod.terminationGracePeriodSeconds).to.be.within(10, 60);
        for (const container of pod.containers) {
          expect(container.securityContext).to.deep.equal({
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            capabilities: { drop: ['ALL'] },
          });
          expect(container.resources?.requests, `${name} requests`).to.have.all.keys('cpu', 'memory');
          expect(container.resources?.limits, `${name} limits`).to.have.all.keys('cpu', 'memory');
          expect(container.livenessProbe?.httpGet).to.deep.equal({ path: '/healthz', port: 'health' });
          expect(container.readinessProbe?.httpGet).to.deep.equal({ path: '/readyz', port: 'health' });
          expect((container.ports ?? []).map((p) => p.name)).to.include('health');
          for (const mount of container.volumeMounts ?? [])
            expect(mount.subPath, mount.name).to.equal(undefined);
        }
      }
    }
  });

  it('keeps the webhook available: PDB, spread across nodes, never below two ready replicas in a rollout', () => {
    for (const [, documents] of overlays) {
      const spec = present(one(documents, 'Deployment', 'webhook').spec, 'webhook spec');
      const labels = spec.template.metadata?.labels;
      const pdb = present(one(documents, 'PodDisruptionBudget', 'webhook').spec, 'PDB spec');
      expect(pdb.minAvailable).to.equal(1);
      expect(selects(pdb.selector?.matchLabels, labels)).to.equal(true);
      const spread = present(
        (spec.template.spec?.topologySpreadConstraints ?? []).find(
          (c) => c.topologyKey === 'kubernetes.io/hostname',
        ),
        'a spread over nodes',
      );
      expect(spread).to.deep.include({ maxSkew: 1, whenUnsatisfiable: 'DoNotSchedule' });
      expect(selects(spread.labelSelector?.matchLabels, labels)).to.equal(true);
      expect(spec.strategy?.rollingUpdate?.maxUnavailable).to.equal(0);
    }
  });

  it('wires the Service and the webhook configuration to the webhook pods and their serving port', () => {
    for (const [, documents] of overlays) {
      const container = present(webhookPodSpec(documents).containers[0], 'webhook container');
      const service = present(one(documents, 'Service', 'webhook').spec, 'Service spec');
      const labels = one(documents, 'Deployment', 'webhook').spec?.template.metadata?.labels;
      expect(selects(service.selector, labels)).to.equal(true);
      const servicePort = present(service.ports?.[0], 'Service port');
      const https = present(
        (container.ports ?? []).find((p) => p.name === servicePort.targetPort),
        'the container port the Service targets',
      );
      expect(https.containerPort).to.equal(9443);
      expect(container.args).to.include(`--port=${https.containerPort}`);
      for (const webhook of one(documents, 'ValidatingWebhookConfiguration', 'kmm-preflight').webhooks ??
        []) {
        const resource = webhook.rules?.[0]?.resources?.[0] ?? '';
        expect(webhook.clientConfig.service).to.deep.equal({
          namespace: NAMESPACE,
          name: 'webhook',
          // One path per resource (webhook/app.ts serves /validate/<anything>), so their metrics differ.
          path: resource === 'modules' ? '/validate/module' : '/validate/preflightvalidationocp',
          port: servicePort.port,
        });
      }
    }
  });

  it('registers the webhook safely: v1 reviews, no side effects, short timeouts, main resources only', () => {
    for (const [, documents] of overlays) {
      const configuration = one(documents, 'ValidatingWebhookConfiguration', 'kmm-preflight');
      const byResource = new Map<string, NonNullable<IValidatingWebhookConfiguration['webhooks']>[number]>();
      for (const webhook of configuration.webhooks ?? []) {
        expect(webhook.admissionReviewVersions).to.deep.equal(['v1']);
        expect(webhook.sideEffects).to.equal('None');
        expect(webhook.timeoutSeconds).to.be.within(1, 5);
        for (const resource of (webhook.rules ?? []).flatMap((rule) => rule.resources ?? [])) {
          expect(resource, 'no subresource (status writes must not pass the webhook)').to.not.include('/');
          byResource.set(resource, webhook);
        }
      }
      expect([...byResource.keys()].sort()).to.deep.equal(['modules', 'preflightvalidationsocp']);
      expect(byResource.get('preflightvalidationsocp')?.failurePolicy).to.equal('Fail');
      const modules = byResource.get('modules');
      expect(modules?.failurePolicy).to.equal('Ignore');
      expect(modules?.namespaceSelector?.matchExpressions).to.deep.include({
        key: 'kubernetes.io/metadata.name',
        operator: 'NotIn',
        values: [NAMESPACE, 'kube-system'],
      });
    }
  });

  it('default: cert-manager issues the serving certificate from a stable CA and injects that CA', () => {
    const documents = rendered.default;
    const configuration = one(documents, 'ValidatingWebhookConfiguration', 'kmm-preflight');
    const injectFrom = present(
      configuration.metadata?.annotations?.['cert-manager.io/inject-ca-from'],
      'annotation',
    );
    const [namespace, certificateName = ''] = injectFrom.split('/');
    expect(namespace).to.equal(NAMESPACE);
    const serving = present(one(documents, 'Certificate', certificateName).spec, 'serving Certificate');
    expect(serving.secretName).to.equal(webhookSecretName(documents));
    expect(serving.dnsNames).to.include(webhookServiceDnsName);
    expect(serving.isCA).to.not.equal(true);
    const caSecret = present(
      one(documents, 'Issuer', serving.issuerRef.name).spec?.ca?.secretName,
      'a CA Issuer',
    );
    const ca = present(
      objects(documents, 'Certificate').find((c) => c.spec?.secretName === caSecret)?.spec,
      'the CA Certificate',
    );
    expect(ca.isCA).to.equal(true);
    expect(one(documents, 'Issuer', ca.issuerRef.name).spec).to.deep.equal({ selfSigned: {} });
  });

  it('self-signed: the Secret holds the certs files and every caBundle is their CA', () => {
    const documents = rendered.selfSigned;
    const secret = one(documents, 'Secret', webhookSecretName(documents));
    expect(secret.type).to.equal('kubernetes.io/tls');
    const data = present(secret.data, 'Secret data');
    expect(data).to.have.all.keys('ca.crt', 'tls.crt', 'tls.key');
    const decode = (base64: string | undefined): string =>
      Buffer.from(present(base64, 'base64'), 'base64').toString();
    expect(decode(data['ca.crt'])).to.equal(rendered.selfSignedCaPem);
    const ca = new X509Certificate(rendered.selfSignedCaPem);
    expect(new X509Certificate(decode(data['tls.crt'])).checkIssued(ca)).to.equal(true);
    const webhooks = one(documents, 'ValidatingWebhookConfiguration', 'kmm-preflight').webhooks ?? [];
    expect(webhooks).to.have.length(2);
    for (const webhook of webhooks)
      expect(decode(webhook.clientConfig.caBundle)).to.equal(rendered.selfSignedCaPem);
  });

  it('RBAC: no wildcards, the webhook only reads, the runner writes only status and Jobs cluster-wide', () => {
    const documents = rendered.default;
    const writeVerbs = ['create', 'update', 'patch', 'delete', 'deletecollection'];
    for (const role of [...objects(documents, 'ClusterRole'), ...objects(documents, 'Role')]) {
      for (const rule of role.rules ?? []) {
        for (const list of [rule.apiGroups, rule.resources, rule.verbs]) expect(list).to.not.include('*');
        expect(rule.verbs).to.not.include('deletecollection');
      }
    }
    // Its informers list and watch; nothing in the webhook gets an object by name.
    for (const rule of one(documents, 'ClusterRole', 'kmm-preflight-webhook').rules ?? []) {
      expect(rule.verbs).to.deep.equal(['list', 'watch']);
    }
    const runnerRules = one(documents, 'ClusterRole', 'kmm-preflight-runner').rules ?? [];
    const written = runnerRules
      .filter((rule) => rule.verbs.some((verb) => writeVerbs.includes(verb)))
      .flatMap((rule) => rule.resources ?? []);
    expect(written.sort()).to.deep.equal(['jobs', 'preflightvalidationsocp/status']);
    const secretVerbs = runnerRules.filter((r) => r.resources?.includes('secrets')).flatMap((r) => r.verbs);
    expect(secretVerbs).to.deep.equal(['get']);
    const bindings = [...objects(documents, 'ClusterRoleBinding'), ...objects(documents, 'RoleBinding')];
    expect(bindings).to.have.length(4);
    for (const binding of bindings) {
      const roles =
        binding.roleRef.kind === 'ClusterRole'
          ? objects(documents, 'ClusterRole')
          : objects(documents, 'Role');
      const role = roles.find(
        (r) =>
          r.metadata?.name === binding.roleRef.name && r.metadata.namespace === binding.metadata?.namespace,
      );
      expect(role, `${binding.metadata?.name ?? ''} refers to a role we ship`).to.not.equal(undefined);
      for (const subject of binding.subjects ?? []) {
        expect(subject.namespace).to.equal(NAMESPACE);
        one(documents, 'ServiceAccount', subject.name);
      }
    }
  });

  it('passes each container only subcommands and flags the kmm-preflight CLI defines', function () {
    const program = new Command();
    const io = { stdout: process.stdout, stderr: process.stderr, env: {} };
    for (const register of commandRegistrations) register(program, io, () => undefined);
    const notLanded: string[] = [];
    for (const name of ['runner', 'webhook']) {
      const args = present(
        one(rendered.default, 'Deployment', name).spec?.template.spec?.containers[0]?.args,
        `${name} args`,
      );
      const command = program.commands.find((c) => c.name() === args[0]);
      if (command === undefined) {
        notLanded.push(name);
        continue;
      }
      const flags = new Set(command.options.map((option) => option.long));
      for (const arg of args.slice(1)) expect(flags, `${name}: ${arg}`).to.include(arg.split('=')[0]);
    }
    // A subcommand not yet in src/cli/commands.ts has nothing to compare against: pending, not passed.
    if (notLanded.length > 0) this.skip();
  });
});
