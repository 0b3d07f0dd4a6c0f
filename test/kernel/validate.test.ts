import { expect } from 'chai';
import type { FieldIssue } from '../../src/api/structure.ts';
import { validateModule, validateModuleUpdate, validatePreflightSpec } from '../../src/kernel/validate.ts';

const C = 'spec.moduleLoader.container';

/** A valid Module as plain data; `container` entries replace the defaults. */
function moduleData(container: Record<string, unknown>, metadata: Record<string, unknown> = {}): unknown {
  return {
    apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
    kind: 'Module',
    metadata: { name: 'kmm-ci', namespace: 'ns', ...metadata },
    spec: {
      selector: { 'node-role.kubernetes.io/worker': '' },
      moduleLoader: {
        container: {
          modprobe: { moduleName: 'kmm_ci_a' },
          containerImage: 'quay.io/org/kmm-ci:${KERNEL_FULL_VERSION}',
          kernelMappings: [{ regexp: '^.+$' }],
          ...container,
        },
      },
    },
  };
}

function paths(issues: FieldIssue[]): string[] {
  return issues.map((issue) => issue.path);
}

describe('kernel/validate: validateModule', () => {
  it('accepts a valid Module', () => {
    expect(validateModule(moduleData({}))).to.deep.equal([]);
    expect(
      validateModule(
        moduleData({
          modprobe: { moduleName: 'a', modulesLoadingOrder: ['a', 'b', 'c'] },
          build: { dockerfileConfigMap: { name: 'd' } },
          sign: {
            keySecret: { name: 'k' },
            certSecret: { name: 'c' },
            unsignedImage: 'q.io/u:${KERNEL_XYZ}',
          },
          kernelMappings: [
            { literal: '5.14.0-284.el9.x86_64', containerImage: 'q.io/m@sha256:' + 'a'.repeat(64) },
            { regexp: '^6\\.', build: { buildArgs: [{ name: 'X', value: '1' }] } },
          ],
        }),
      ),
    ).to.deep.equal([]);
  });

  it('literal and regexp: mutually exclusive, one required', () => {
    const issues = validateModule(
      moduleData({ kernelMappings: [{ literal: 'a.b.c', regexp: 'x' }, {}, { literal: '' }] }),
    );
    expect(issues).to.deep.include.members([
      { path: `${C}.kernelMappings[0]`, message: 'literal and regexp are mutually exclusive: set only one' },
      { path: `${C}.kernelMappings[1]`, message: 'set literal (an exact kernel) or regexp (an RE2 pattern)' },
      { path: `${C}.kernelMappings[2]`, message: 'set literal (an exact kernel) or regexp (an RE2 pattern)' },
    ]);
  });

  it('regexp must compile under RE2 (lookaround and backreferences do not)', () => {
    const issues = validateModule(
      moduleData({ kernelMappings: [{ regexp: '^5' }, { regexp: '(?=el9)' }, { regexp: '(el)\\1' }] }),
    );
    expect(paths(issues)).to.deep.equal([`${C}.kernelMappings[1].regexp`, `${C}.kernelMappings[2].regexp`]);
    expect(issues[0]?.message).to.match(
      /^invalid RE2 regexp: error parsing regexp: invalid or unsupported Perl syntax/,
    );
  });

  it('an image at the mapping or the Module level; a mapping without one falls back to the Module', () => {
    expect(validateModule(moduleData({ kernelMappings: [{ regexp: '.' }] }))).to.deep.equal([]);
    const issues = validateModule(
      moduleData({
        containerImage: undefined,
        kernelMappings: [{ regexp: '.' }, { literal: '6.1.0', containerImage: 'q.io/m:1' }],
      }),
    );
    expect(issues).to.deep.equal([
      {
        path: `${C}.kernelMappings[0].containerImage`,
        message: `no container image: set it here or at ${C}.containerImage`,
      },
    ]);
  });

  it('images must parse after substitution (the mapping literal is the kernel used)', () => {
    const issues = validateModule(
      moduleData({
        containerImage: 'quay.io/Org/m:${KERNEL_FULL_VERSION}',
        kernelMappings: [
          { literal: '5.14.0-1.el9.x86_64', containerImage: 'q.io/m:${KERNEL_X' },
          { regexp: '.', containerImage: 'q.io/m:-${KERNEL_XYZ}' },
          { regexp: '.', containerImage: 'q.io/${MOD_NAME}:${KERNEL_XY}' },
        ],
      }),
    );
    expect(paths(issues)).to.deep.equal([
      `${C}.containerImage`,
      `${C}.kernelMappings[0].containerImage`,
      `${C}.kernelMappings[1].containerImage`,
      `${C}.kernelMappings[2].containerImage`,
    ]);
    expect(issues[0]?.message).to.contain('must be lowercase').and.contain('after substitution');
    expect(issues[1]?.message).to.contain('closing brace expected');
    expect(issues[2]?.message).to.contain('tag "-5.14.0" is invalid');
    // KMM trap: ${KERNEL_XY} is empty, leaving "q.io/kmm-ci:" with no tag.
    expect(issues[3]?.message).to.contain('the tag after ":" is empty').and.contain('"q.io/kmm-ci:"');
  });

  it('reports a bad image at every mapping that repeats it, each with its own kernel', () => {
    const template = 'q.io/m:-${KERNEL_Y}';
    const issues = validateModule(
      moduleData({
        containerImage: template,
        kernelMappings: [
          { regexp: 'a', containerImage: template },
          { literal: '6.2.0-1.el10.x86_64', containerImage: template },
          { regexp: 'b', containerImage: template },
          { regexp: 'c' },
        ],
      }),
    );
    expect(issues).to.deep.equal([
      { path: `${C}.containerImage`, message: issues[0]?.message },
      { path: `${C}.kernelMappings[0].containerImage`, message: issues[0]?.message },
      { path: `${C}.kernelMappings[1].containerImage`, message: issues[2]?.message },
      { path: `${C}.kernelMappings[2].containerImage`, message: issues[0]?.message },
    ]);
    // The sample kernel (5.14.0-427...) for the Module and the regexp mappings, the literal for mapping 1.
    expect(issues[0]?.message).to.contain('"q.io/m:-14"');
    expect(issues[2]?.message).to.contain('"q.io/m:-2"');
  });

  it('moduleName, or rawArgs load and unload; not both', () => {
    expect(
      validateModule(moduleData({ modprobe: { rawArgs: { load: ['insmod x'], unload: ['rmmod x'] } } })),
    ).to.deep.equal([]);
    expect(
      validateModule(moduleData({ modprobe: { moduleName: 'a', rawArgs: { load: ['x'], unload: ['y'] } } })),
    ).to.deep.equal([
      { path: `${C}.modprobe.rawArgs`, message: 'rawArgs cannot be set when moduleName is set' },
    ]);
    expect(validateModule(moduleData({ modprobe: {} }))).to.deep.equal([
      {
        path: `${C}.modprobe.moduleName`,
        message: 'set moduleName, or leave it unset and set both rawArgs.load and rawArgs.unload',
      },
    ]);
  });

  it('modulesLoadingOrder: at least two, moduleName first, no duplicates', () => {
    const issues = validateModule(
      moduleData({ modprobe: { moduleName: 'a', modulesLoadingOrder: ['b', 'c', 'b'] } }),
    );
    expect(issues).to.deep.equal([
      { path: `${C}.modprobe.modulesLoadingOrder[0]`, message: 'must be moduleName "a"' },
      {
        path: `${C}.modprobe.modulesLoadingOrder[2]`,
        message: `duplicates ${C}.modprobe.modulesLoadingOrder[0]`,
      },
    ]);
    expect(
      paths(validateModule(moduleData({ modprobe: { moduleName: 'a', modulesLoadingOrder: ['a'] } }))),
    ).to.deep.equal([`${C}.modprobe.modulesLoadingOrder`]);
  });

  it('a build needs dockerfileConfigMap at either level; reported once where it is missing', () => {
    expect(
      validateModule(
        moduleData({
          build: { dockerfileConfigMap: { name: 'd' } },
          kernelMappings: [{ regexp: '.', build: {} }],
        }),
      ),
    ).to.deep.equal([]);
    expect(
      paths(validateModule(moduleData({ build: {}, kernelMappings: [{ regexp: 'a' }, { regexp: 'b' }] }))),
    ).to.deep.equal([`${C}.build.dockerfileConfigMap`]);
    expect(
      paths(validateModule(moduleData({ kernelMappings: [{ regexp: 'a' }, { regexp: 'b', build: {} }] }))),
    ).to.deep.equal([`${C}.kernelMappings[1].build.dockerfileConfigMap`]);
  });

  it('a sign section needs keySecret and certSecret; unsignedImage must parse with kernel variables', () => {
    const issues = validateModule(
      moduleData({
        kernelMappings: [
          { regexp: '.', sign: { keySecret: { name: 'k' }, unsignedImage: 'q.io/${MOD_NAME}:x' } },
        ],
      }),
    );
    expect(paths(issues)).to.deep.equal([
      `${C}.kernelMappings[0].sign.certSecret`,
      // MOD_NAME is not a sign variable: "q.io/:x" has an empty repository.
      `${C}.kernelMappings[0].sign.unsignedImage`,
    ]);
    expect(
      validateModule(
        moduleData({
          sign: { keySecret: { name: 'k' } },
          kernelMappings: [{ regexp: '.', sign: { certSecret: { name: 'c' } } }],
        }),
      ),
    ).to.deep.equal([]);
  });

  it('a sign section without keySecret names the missing key Secret', () => {
    const issues = validateModule(
      moduleData({ kernelMappings: [{ regexp: '.', sign: { certSecret: { name: 'c' } } }] }),
    );
    expect(issues).to.have.length(1);
    expect(issues[0]?.path).to.equal(`${C}.kernelMappings[0].sign.keySecret`);
    expect(issues[0]?.message).to.contain('private key under "key"');
  });

  it('filesToSign entries at both levels must substitute with the kernel variables', () => {
    const issues = validateModule(
      moduleData({
        sign: {
          keySecret: { name: 'k' },
          certSecret: { name: 'c' },
          filesToSign: ['/opt/lib/modules/${KERNEL_FULL_VERSION}/a.ko', '/opt/${KERNEL_X'],
        },
        kernelMappings: [{ regexp: '.', sign: { filesToSign: ['/opt/lib/modules/${KERNEL_Y/b.ko'] } }],
      }),
    );
    expect(paths(issues)).to.deep.equal([
      `${C}.sign.filesToSign[1]`,
      `${C}.kernelMappings[0].sign.filesToSign[0]`,
    ]);
    expect(issues[0]?.message).to.contain('closing brace expected');
  });

  it("checks the Module's image with each literal mapping that inherits it", () => {
    // Valid with the sample kernel, but this literal kernel makes a 141-character tag (the limit is 128).
    const literal = `5.14.0-${'1'.repeat(120)}.el9_4.x86_64`;
    const issues = validateModule(moduleData({ kernelMappings: [{ regexp: '^6' }, { literal }] }));
    expect(paths(issues)).to.deep.equal([`${C}.containerImage`]);
    expect(issues[0]?.message).to.contain(`for ${C}.kernelMappings[1] (literal "${literal}")`);
    expect(issues[0]?.message).to.contain('tag');
  });

  it('inTreeModuleToRemove and inTreeModulesToRemove are mutually exclusive', () => {
    expect(
      paths(
        validateModule(
          moduleData({
            inTreeModuleToRemove: 'a',
            inTreeModulesToRemove: ['b'],
            kernelMappings: [{ regexp: '.', inTreeModuleToRemove: 'a', inTreeModulesToRemove: [] }],
          }),
        ),
      ),
    ).to.have.members([`${C}.inTreeModuleToRemove`, `${C}.kernelMappings[0].inTreeModuleToRemove`]);
  });

  it('reports every error at once, structural and semantic, each with its path', () => {
    const issues = validateModule({
      apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
      kind: 'Module',
      metadata: {},
      spec: {
        selector: {},
        moduleLoader: {
          container: {
            modprobe: { moduleName: 'a', modulesLoadingOrder: ['a'] },
            imagePullPolicy: 'Sometimes',
            kernelMappings: [
              { literal: 'x', regexp: 'y', containerImage: 'q.io/m:1' },
              { regexp: '(' },
              { regexp: 7 },
            ],
          },
        },
      },
    });
    expect(paths(issues)).to.have.members([
      `${C}.imagePullPolicy`,
      `${C}.kernelMappings[2].regexp`,
      'metadata.name',
      `${C}.modprobe.modulesLoadingOrder`,
      `${C}.kernelMappings[0]`,
      `${C}.kernelMappings[1].regexp`,
      `${C}.kernelMappings[1].containerImage`,
      `${C}.kernelMappings[2]`,
      `${C}.kernelMappings[2].containerImage`,
    ]);
  });

  it('never throws on garbage', () => {
    for (const garbage of [
      undefined,
      null,
      'x',
      1,
      [],
      { spec: { moduleLoader: { container: { kernelMappings: 'x', modprobe: 1 } } } },
    ]) {
      expect(validateModule(garbage)).to.be.an('array').that.is.not.empty;
    }
  });

  it('a Module without moduleLoader (device plugin only) has nothing to check there', () => {
    const module = moduleData({}) as { spec: Record<string, unknown> };
    delete module.spec.moduleLoader;
    expect(validateModule(module)).to.deep.equal([]);
  });
});

describe('kernel/validate: validateModuleUpdate', () => {
  it('refuses to gain or lose a version in place, allows changing it', () => {
    expect(validateModuleUpdate(moduleData({}), moduleData({ version: 'v1' }))).to.have.length(1);
    expect(validateModuleUpdate(moduleData({ version: 'v1' }), moduleData({}))[0]).to.deep.equal({
      path: `${C}.version`,
      message: 'cannot update to or from an empty version; delete the Module and create it again',
    });
    expect(validateModuleUpdate(moduleData({ version: 'v1' }), moduleData({ version: 'v2' }))).to.deep.equal(
      [],
    );
    expect(validateModuleUpdate(moduleData({}), moduleData({}))).to.deep.equal([]);
  });
});

describe('kernel/validate: validatePreflightSpec', () => {
  it('accepts a release image by tag or digest', () => {
    expect(
      validatePreflightSpec({ releaseImage: 'quay.io/openshift-release-dev/ocp-release:4.16.3-x86_64' }),
    ).to.deep.equal([]);
    expect(
      validatePreflightSpec({
        releaseImage: `quay.io/openshift-release-dev/ocp-release@sha256:${'2'.repeat(64)}`,
        pushBuiltImage: true,
        useRTKernel: true,
      }),
    ).to.deep.equal([]);
  });

  it('requires a non-empty releaseImage that parses', () => {
    expect(validatePreflightSpec({})).to.deep.equal([{ path: 'spec.releaseImage', message: 'is required' }]);
    expect(paths(validatePreflightSpec({ releaseImage: '' }))).to.deep.equal(['spec.releaseImage']);
    const issues = validatePreflightSpec({
      releaseImage: 'quay.io/ocp-release@sha256:abc',
      pushBuiltImage: 'yes',
    });
    expect(issues).to.deep.include({ path: 'spec.pushBuiltImage', message: 'must be boolean' });
    expect(issues.find((issue) => issue.path === 'spec.releaseImage')?.message).to.contain('sha256 needs 64');
  });

  it('refuses an OCI layout release in a cluster, accepts it when asked (offline check)', () => {
    expect(paths(validatePreflightSpec({ releaseImage: 'oci:/releases/4.16' }))).to.deep.equal([
      'spec.releaseImage',
    ]);
    expect(
      validatePreflightSpec({ releaseImage: 'oci:/releases/4.16' }, { allowOciLayout: true }),
    ).to.deep.equal([]);
  });
});
