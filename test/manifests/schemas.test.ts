import { expect } from 'chai';
import { KubernetesSchemas } from './kubernetes-schema.ts';
import {
  loadManifestFile,
  manifestFiles,
  renderOverlays,
  withWorkDir,
  type ManifestDocument,
} from './render.ts';

/**
 * kustomize writes generated base64 (Secret data, and the caBundle copied from it) wrapped at 76 columns. The API
 * server decodes it with Go's encoding/base64, which skips line breaks, so it is valid there; the schema's "byte"
 * format is stricter. Unwrap only those fields, so everything else is checked exactly as written.
 */
function withBase64Unwrapped(object: Record<string, unknown>): Record<string, unknown> {
  const unwrap = (value: unknown): unknown =>
    typeof value === 'string' ? value.replace(/[\r\n]/g, '') : value;
  if (object.kind === 'Secret' && typeof object.data === 'object' && object.data !== null) {
    const data = Object.fromEntries(Object.entries(object.data).map(([key, value]) => [key, unwrap(value)]));
    return { ...object, data };
  }
  if (object.kind === 'ValidatingWebhookConfiguration' && Array.isArray(object.webhooks)) {
    const webhooks = (object.webhooks as { clientConfig?: { caBundle?: unknown } }[]).map((webhook) =>
      webhook.clientConfig?.caBundle === undefined
        ? webhook
        : {
            ...webhook,
            clientConfig: { ...webhook.clientConfig, caBundle: unwrap(webhook.clientConfig.caBundle) },
          },
    );
    return { ...object, webhooks };
  }
  return object;
}

// Every manifest we ship, file by file and as each overlay renders, against the official Kubernetes and
// cert-manager schemas (see kubernetes-schema.ts), strictly: a field the schema does not declare is an error.
describe('manifests: official schemas', function () {
  this.timeout(60_000);
  const schemas = new KubernetesSchemas();

  function expectValid(documents: readonly ManifestDocument[]): void {
    const problems: string[] = [];
    for (const { source, object } of documents) {
      const verdict = schemas.validate(withBase64Unwrapped(object));
      const name = (object.metadata as { name?: string } | undefined)?.name ?? '?';
      if (verdict.kind !== 'valid')
        problems.push(`${source}: ${String(object.kind)} ${name}: ${verdict.message}`);
    }
    expect(problems, problems.join('\n')).to.deep.equal([]);
  }

  it('every YAML file under manifests/ validates, and every object has a schema', async () => {
    const files = await manifestFiles();
    const documents = (await Promise.all(files.map(loadManifestFile))).flat();
    expect(files.length).to.be.greaterThan(8);
    expectValid(documents);
  });

  it('the output of `kubectl kustomize` for each overlay validates', async () => {
    const rendered = await withWorkDir(renderOverlays);
    // The strict check covers the real objects: one misspelling in the rendered webhook Deployment is caught.
    const webhook = rendered.default.find(
      (d) => d.object.kind === 'Deployment' && (d.object.metadata as { name?: string }).name === 'webhook',
    );
    const broken = structuredClone(webhook!.object) as {
      spec: { template: { spec: { containers: { securityContext: Record<string, unknown> }[] } } };
    };
    broken.spec.template.spec.containers[0]!.securityContext['readOnlyRootFileSystem'] = true;
    expect(schemas.validate(broken)).to.include({ kind: 'invalid' });
    expect(rendered.default.length).to.be.greaterThan(15);
    expect(rendered.selfSigned.length).to.be.greaterThan(12);
    expectValid(rendered.default);
    expectValid(rendered.selfSigned);
  });

  it('the schemas reject what the API server would (the validator is not a pass-through)', () => {
    const deployment = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'x' },
      spec: {
        selector: {},
        template: {
          spec: { containers: [{ name: 'c', resources: { limits: { memory: '512 megabytes' } } }] },
        },
      },
    };
    expect(schemas.validate(deployment)).to.include({ kind: 'invalid' });
    const certificate = {
      apiVersion: 'cert-manager.io/v1',
      kind: 'Certificate',
      metadata: { name: 'x' },
      spec: {},
    };
    expect(schemas.validate(certificate)).to.include({ kind: 'invalid' });
    // Misspelled fields, which the generated validators alone let through.
    const typoDeployment = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'x', labels: { app: 'x' } },
      spec: {
        selector: { matchLabels: { app: 'x' } },
        template: {
          metadata: { labels: { app: 'x' } },
          spec: { containers: [{ name: 'c', securityContext: { readOnlyRootFileSystem: true } }] },
        },
      },
    };
    expect(schemas.validate(typoDeployment)).to.deep.equal({
      kind: 'invalid',
      message:
        'fields the schema does not declare (misspelled?): /spec/template/spec/containers/0/securityContext/readOnlyRootFileSystem',
    });
    const typoCertificate = {
      apiVersion: 'cert-manager.io/v1',
      kind: 'Certificate',
      metadata: { name: 'x' },
      spec: { secretName: 's', issuerRef: { name: 'i' }, dnsNamez: ['a.example'] },
    };
    expect(schemas.validate(typoCertificate)).to.deep.equal({
      kind: 'invalid',
      message: 'fields the schema does not declare (misspelled?): /spec/dnsNamez',
    });
    const fixed = structuredClone(typoCertificate) as { spec: Record<string, unknown> };
    fixed.spec['dnsNames'] = fixed.spec['dnsNamez'];
    delete fixed.spec['dnsNamez'];
    expect(schemas.validate(fixed)).to.deep.equal({ kind: 'valid' });
    expect(schemas.validate({ apiVersion: 'example.com/v1', kind: 'Widget' })).to.include({
      kind: 'unknown-type',
    });
  });
});
