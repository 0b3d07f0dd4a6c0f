import { expect } from 'chai';
import { mkdtemp, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManifestPathError, loadManifests } from '../../src/check/manifests.ts';

const moduleYaml = (name: string, namespace = 'default'): string => `apiVersion: kmm.sigs.x-k8s.io/v1beta1
kind: Module
metadata:
  name: ${name}
  namespace: ${namespace}
spec:
  selector: {}
  moduleLoader:
    container:
      modprobe: { moduleName: ${name} }
      kernelMappings:
        - regexp: '^.+$'
          containerImage: example.com/${name}:v1
`;

describe('check: loading Module manifests', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kmm-manifests-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads multi-document files, Lists and directories recursively, skipping other kinds with a note', async () => {
    await mkdir(join(dir, 'nested'));
    await writeFile(
      join(dir, 'a.yaml'),
      `${moduleYaml('a')}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: dockerfile}\n---\n`,
    );
    await writeFile(
      join(dir, 'nested', 'list.yml'),
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'List',
        items: [{ apiVersion: 'kmm.sigs.x-k8s.io/v1beta1', kind: 'Module', metadata: { name: 'b' } }],
      }),
    );
    await writeFile(join(dir, 'README.md'), '# not a manifest');
    const loaded = await loadManifests([dir]);
    expect(loaded.modules.map((m) => (m.object['metadata'] as { name: string }).name)).to.deep.equal([
      'a',
      'b',
    ]);
    expect(loaded.modules[0]?.source).to.equal(`${join(dir, 'a.yaml')}#1`);
    expect(loaded.modules[1]?.source).to.match(/list\.yml items\[0\]$/);
    expect(loaded.notes).to.have.length(1);
    expect(loaded.notes[0]).to.match(/a\.yaml#2: skipped ConfigMap dockerfile \(v1\), not a KMM Module/);
    expect(loaded.errors).to.deep.equal([]);
  });

  it('reports a broken document with its file and keeps the good ones', async () => {
    await writeFile(join(dir, 'bad.yaml'), `${moduleYaml('ok')}---\nkind: Module\nmetadata: [unclosed\n`);
    const loaded = await loadManifests([join(dir, 'bad.yaml')]);
    expect(loaded.modules).to.have.length(1);
    expect(loaded.errors).to.have.length(1);
    expect(loaded.errors[0]).to.include({ file: join(dir, 'bad.yaml'), document: 2 });
    expect(loaded.errors[0]?.message).to.match(/^not valid YAML: .* at line \d+, column \d+/);
  });

  it('follows symlinked manifests, and reports one it cannot read while still reading the others', async () => {
    await mkdir(join(dir, 'shared'));
    await writeFile(join(dir, 'shared', 'c.yaml'), moduleYaml('c'));
    await mkdir(join(dir, 'gitops'));
    await writeFile(join(dir, 'gitops', 'a.yaml'), moduleYaml('a'));
    await symlink(join(dir, 'gone.yaml'), join(dir, 'gitops', 'b.yaml'));
    await symlink(join(dir, 'shared', 'c.yaml'), join(dir, 'gitops', 'c.yaml'));
    const loaded = await loadManifests([join(dir, 'gitops')]);
    expect(loaded.modules.map((m) => m.source)).to.deep.equal([
      join(dir, 'gitops', 'a.yaml'),
      join(dir, 'gitops', 'c.yaml'),
    ]);
    expect(loaded.errors).to.deep.equal([
      { file: join(dir, 'gitops', 'b.yaml'), message: 'cannot read it (ENOENT)' },
    ]);
  });

  it('does not take a Module of another API group for a KMM Module', async () => {
    await writeFile(
      join(dir, 'other.yaml'),
      'apiVersion: example.com/v1\nkind: Module\nmetadata: {name: x}\n',
    );
    const loaded = await loadManifests([dir]);
    expect(loaded.modules).to.deep.equal([]);
    expect(loaded.notes[0]).to.match(/skipped Module x \(example\.com\/v1\)/);
  });

  it('names a missing path in its error', async () => {
    const missing = join(dir, 'nope');
    try {
      await loadManifests([missing]);
      expect.fail('expected an error');
    } catch (err) {
      expect(err).to.be.instanceOf(ManifestPathError);
      expect((err as Error).message).to.equal(`-f ${missing}: no such file or directory`);
    }
  });
});
