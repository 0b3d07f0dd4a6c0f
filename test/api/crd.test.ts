import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import { expect } from 'chai';
import { parse } from 'yaml';
import {
  crdFiles,
  moduleCrd,
  preflightValidationOcpCrd,
  toStructuralSchema,
  UnsupportedSchemaError,
} from '../../src/api/crd.ts';
import type { StructuralSchema } from '../../src/api/crd.ts';
import { StringEnum } from '../../src/api/meta.ts';

const repositoryRoot = join(import.meta.dirname, '..', '..');

/** Every node of a schema with its path. */
function* nodes(schema: StructuralSchema, path = ''): Generator<[string, StructuralSchema]> {
  yield [path, schema];
  for (const [name, child] of Object.entries(schema.properties ?? {})) yield* nodes(child, `${path}.${name}`);
  if (schema.items !== undefined) yield* nodes(schema.items, `${path}[]`);
  if (schema.additionalProperties !== undefined) yield* nodes(schema.additionalProperties, `${path}{}`);
}

function openApi(crd: ReturnType<typeof moduleCrd>): StructuralSchema {
  const version = crd.spec.versions[0];
  if (version === undefined) throw new Error('no version');
  return version.schema.openAPIV3Schema;
}

describe('api/crd: generated CRDs', () => {
  it('the committed manifests/crds files are exactly the generated output (run npm run gen:crds)', async () => {
    const files = crdFiles();
    expect(files.map((file) => file.path)).to.deep.equal([
      'manifests/crds/preflightvalidationocp.yaml',
      'manifests/crds/module.yaml',
    ]);
    for (const file of files) {
      const committed = await readFile(join(repositoryRoot, file.path), 'utf8');
      expect(committed, `${file.path} is stale: run npm run gen:crds`).to.equal(file.content);
    }
  });

  it('the YAML parses back to the CRD objects', () => {
    const [preflight, module] = crdFiles();
    expect(parse(preflight?.content ?? '')).to.deep.equal(preflightValidationOcpCrd());
    expect(parse(module?.content ?? '')).to.deep.equal(moduleCrd());
  });

  it('PreflightValidationOCP: cluster-scoped, plural preflightvalidationsocp, short name pfvo, status subresource', () => {
    const crd = preflightValidationOcpCrd();
    expect(crd.metadata.name).to.equal('preflightvalidationsocp.kmm.sigs.x-k8s.io');
    expect(crd.spec.scope).to.equal('Cluster');
    expect(crd.spec.group).to.equal('kmm.sigs.x-k8s.io');
    expect(crd.spec.names).to.deep.equal({
      kind: 'PreflightValidationOCP',
      listKind: 'PreflightValidationOCPList',
      plural: 'preflightvalidationsocp',
      singular: 'preflightvalidationocp',
      shortNames: ['pfvo'],
    });
    expect(crd.spec.versions.map((v) => [v.name, v.served, v.storage])).to.deep.equal([
      ['v1beta1', true, true],
    ]);
    expect(crd.spec.versions[0]?.subresources).to.deep.equal({ status: {} });
  });

  it('PreflightValidationOCP printer columns: default and wide (priority 1)', () => {
    const columns = preflightValidationOcpCrd().spec.versions[0]?.additionalPrinterColumns ?? [];
    expect(columns.filter((c) => c.priority === undefined).map((c) => [c.name, c.jsonPath])).to.deep.equal([
      ['Release', '.status.releaseVersion'],
      ['Kernel', '.status.targetKernel'],
      ['Verified', '.status.progress'],
      ['Failed', '.status.failed'],
      ['Complete', '.status.conditions[?(@.type=="Complete")].status'],
      ['Age', '.metadata.creationTimestamp'],
    ]);
    expect(columns.filter((c) => c.priority === 1).map((c) => c.name)).to.deep.equal([
      'Release Image',
      'DTK Image',
      'RT',
    ]);
  });

  it('PreflightValidationOCP spec: releaseImage required and non-empty, booleans default false', () => {
    const spec = openApi(preflightValidationOcpCrd()).properties?.spec;
    expect(spec?.required).to.deep.equal(['releaseImage']);
    expect(spec?.properties?.releaseImage).to.include({ type: 'string', minLength: 1 });
    expect(spec?.properties?.pushBuiltImage).to.include({ type: 'boolean', default: false });
    expect(spec?.properties?.useRTKernel).to.include({ type: 'boolean', default: false });
  });

  it('status.modules is a list-map keyed by namespace and name, with the seed enums', () => {
    const status = openApi(preflightValidationOcpCrd()).properties?.status;
    const modules = status?.properties?.modules;
    expect(modules?.['x-kubernetes-list-type']).to.equal('map');
    expect(modules?.['x-kubernetes-list-map-keys']).to.deep.equal(['namespace', 'name']);
    const entry = modules?.items;
    expect(entry?.required).to.have.members([
      'namespace',
      'name',
      'verificationStatus',
      'verificationStage',
      'lastTransitionTime',
    ]);
    expect(entry?.properties?.verificationStatus?.enum).to.deep.equal(['True', 'False']);
    expect(entry?.properties?.verificationStage?.enum).to.deep.equal([
      'Image',
      'Build',
      'Sign',
      'Requeued',
      'Done',
    ]);
    expect(entry?.properties?.lastTransitionTime).to.include({ type: 'string', format: 'date-time' });
    const conditions = status?.properties?.conditions;
    expect(conditions?.['x-kubernetes-list-map-keys']).to.deep.equal(['type']);
    expect(conditions?.items?.properties?.status?.enum).to.deep.equal(['True', 'False', 'Unknown']);
  });

  it('every schema node is structural: it has a type and only allowed keywords', () => {
    for (const crd of [preflightValidationOcpCrd(), moduleCrd()]) {
      for (const [path, node] of nodes(openApi(crd))) {
        expect(node.type, `${crd.metadata.name} ${path || '<root>'}`).to.be.a('string');
        expect(node).not.to.have.any.keys('anyOf', 'oneOf', 'allOf', 'const', 'patternProperties', '$id');
      }
    }
  });

  it('Module: namespaced, keeps fields it does not model, and defaults modprobe.dirName to /opt', () => {
    const crd = moduleCrd();
    expect(crd.spec.scope).to.equal('Namespaced');
    expect(crd.spec.names.plural).to.equal('modules');
    const spec = openApi(crd).properties?.spec;
    expect(spec?.['x-kubernetes-preserve-unknown-fields']).to.equal(true);
    expect(spec?.required).to.deep.equal(['selector']);
    const container = spec?.properties?.moduleLoader?.properties?.container;
    expect(container?.['x-kubernetes-preserve-unknown-fields']).to.equal(true);
    expect(container?.properties?.kernelMappings?.minItems).to.equal(1);
    expect(container?.properties?.modprobe?.properties?.dirName?.default).to.equal('/opt');
    expect(spec?.properties?.selector).to.deep.equal({
      type: 'object',
      additionalProperties: { type: 'string' },
    });
  });
});

describe('api/crd: toStructuralSchema', () => {
  it('rewrites string enums, literals and string records', () => {
    const schema = Type.Object({
      color: StringEnum(['red', 'blue']),
      kind: Type.Literal('Thing'),
      labels: Type.Record(Type.String(), Type.String()),
    });
    expect(toStructuralSchema(schema)).to.deep.equal({
      type: 'object',
      required: ['color', 'kind', 'labels'],
      properties: {
        color: { type: 'string', enum: ['red', 'blue'] },
        kind: { type: 'string', enum: ['Thing'] },
        labels: { type: 'object', additionalProperties: { type: 'string' } },
      },
    });
  });

  it('rejects what a structural schema cannot express, naming where', () => {
    const schema = Type.Object({ value: Type.Union([Type.String(), Type.Number()]) });
    expect(() => toStructuralSchema(schema))
      .to.throw(UnsupportedSchemaError)
      .with.property('path', '.value');
  });
});
