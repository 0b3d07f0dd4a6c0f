import { expect } from 'chai';
import type { KernelMapping, Module, ModuleLoaderContainer } from '../../src/api/module.ts';
import { findKernelMapping } from '../../src/kernel/mapping.ts';
import { RegexpCache } from '../../src/kernel/regexp.ts';
import { mergeBuild, mergeSign, resolveModuleForKernel } from '../../src/kernel/resolve.ts';
import type { ModuleLoaderData } from '../../src/kernel/resolve.ts';

const KERNEL = '5.14.0-284.30.1.el9_2.x86_64';

function moduleWith(container: Partial<ModuleLoaderContainer>, extra: Partial<Module['spec']> = {}): Module {
  return {
    apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
    kind: 'Module',
    metadata: { name: 'kmm-ci', namespace: 'team-a', generation: 2 },
    spec: {
      selector: { 'node-role.kubernetes.io/worker': '' },
      ...extra,
      moduleLoader: {
        container: {
          modprobe: { moduleName: 'kmm_ci_a' },
          kernelMappings: [{ regexp: '^.+$' }],
          ...container,
        },
      },
    },
  };
}

/** The Module-level signing Secrets of the sign-merge tests, which a mapping may override. */
const MODULE_SIGN_SECRETS = { keySecret: { name: 'key' }, certSecret: { name: 'cert' } };

function resolved(module: Module, kernel = KERNEL): ModuleLoaderData {
  const result = resolveModuleForKernel(module, kernel);
  if (!result.ok) throw result.error;
  return result.data;
}

function failed(module: Module, kernel = KERNEL): { code: string; message: string; definite: boolean } {
  const result = resolveModuleForKernel(module, kernel);
  if (result.ok) throw new Error(`expected a failure, got ${JSON.stringify(result.data)}`);
  return result.error;
}

describe('kernel/mapping: findKernelMapping', () => {
  const cache = new RegexpCache();
  const find = (mappings: KernelMapping[], kernel = KERNEL): number | string => {
    const result = findKernelMapping(mappings, kernel, cache);
    return result.ok ? result.data.index : result.error.code;
  };

  it('walks in list order and the first match wins', () => {
    expect(find([{ regexp: 'el9' }, { literal: KERNEL }])).to.equal(0);
    expect(find([{ literal: KERNEL }, { regexp: 'el9' }])).to.equal(0);
    expect(find([{ regexp: 'el8' }, { regexp: 'x86_64$' }, { regexp: '.' }])).to.equal(1);
  });

  it('literal is exact equality: no prefix, substring or normalisation', () => {
    expect(find([{ literal: '5.14.0' }, { literal: KERNEL }])).to.equal(1);
    expect(find([{ literal: `${KERNEL} ` }])).to.equal('NO_MAPPING');
    expect(find([{ literal: '4.18.0-1.el8.x86_64+rt' }], '4.18.0-1.el8.x86_64+rt')).to.equal(0);
  });

  it('regexp is unanchored (an unanchored pattern matching a substring is a match, as in KMM)', () => {
    expect(find([{ regexp: '284' }])).to.equal(0);
    expect(find([{ regexp: '^284' }])).to.equal('NO_MAPPING');
  });

  it('tests the regexp when a literal does not match (KMM checks both when both are set)', () => {
    expect(find([{ literal: 'other', regexp: 'el9' }])).to.equal(0);
  });

  it('no match is a definite NO_MAPPING: "no kernel mapping matches <kernel>"', () => {
    const result = findKernelMapping([{ regexp: 'el8' }, { literal: '6.1.0' }], KERNEL, cache);
    expect(result.ok).to.equal(false);
    if (!result.ok) {
      expect(result.error.code).to.equal('NO_MAPPING');
      expect(result.error.definite).to.equal(true);
      expect(result.error.message).to.equal(`no kernel mapping matches ${KERNEL}`);
    }
    expect(find([])).to.equal('NO_MAPPING');
  });

  it('a regexp that does not compile, reached before a match, is INVALID_REGEXP; after a match it is not reached', () => {
    const result = findKernelMapping([{ regexp: 'el8' }, { regexp: '(' }, { regexp: '.' }], KERNEL, cache);
    expect(result.ok).to.equal(false);
    if (!result.ok) {
      expect(result.error.code).to.equal('INVALID_REGEXP');
      expect(result.error.message)
        .to.contain('kernelMappings[1].regexp "("')
        .and.contain('missing closing )');
    }
    expect(find([{ regexp: '.' }, { regexp: '(' }])).to.equal(0);
  });
});

describe('kernel/resolve: resolveModuleForKernel', () => {
  it('a mapping without an image falls back to the Module image (KMM v1.0 trap), with variables substituted', () => {
    const data = resolved(
      moduleWith({
        containerImage: 'quay.io/org/${MOD_NAMESPACE}-${MOD_NAME}:${KERNEL_FULL_VERSION}',
        kernelMappings: [{ regexp: '^5\\.14' }],
      }),
    );
    expect(data.containerImage).to.equal(`quay.io/org/team-a-kmm-ci:${KERNEL}`);
    expect(data.mappingIndex).to.equal(0);
  });

  it("the mapping's image wins over the Module's", () => {
    const data = resolved(
      moduleWith({
        containerImage: 'quay.io/org/default:1',
        kernelMappings: [{ literal: KERNEL, containerImage: 'quay.io/org/special:${KERNEL_X}.${KERNEL_Y}' }],
      }),
    );
    expect(data.containerImage).to.equal('quay.io/org/special:5.14');
  });

  it('${KERNEL_XY} is not a KMM variable: it substitutes to nothing', () => {
    const data = resolved(moduleWith({ containerImage: 'quay.io/org/m:v${KERNEL_XY}-${KERNEL_XYZ}' }));
    expect(data.containerImage).to.equal('quay.io/org/m:v-5.14.0');
  });

  it('substitutes the normalised kernel in images but matches mappings against the kernel as given', () => {
    const data = resolved(
      moduleWith({
        kernelMappings: [{ literal: '5.14.0-1.el9.x86_64+rt', containerImage: 'r.io/m:${KERNEL_VERSION}' }],
      }),
      '5.14.0-1.el9.x86_64+rt',
    );
    expect(data.containerImage).to.equal('r.io/m:5.14.0-1.el9.x86_64_rt');
    expect(data.kernel).to.equal('5.14.0-1.el9.x86_64+rt');
  });

  it('copies modprobe (dirName defaulted to /opt), selector, secrets, pull policy and version from the Module', () => {
    const data = resolved(
      moduleWith(
        {
          containerImage: 'quay.io/org/m:1',
          imagePullPolicy: 'Always',
          version: 'v2',
          modprobe: { moduleName: 'a', modulesLoadingOrder: ['a', 'b'] },
        },
        { imageRepoSecret: { name: 'pull' } },
      ),
    );
    expect(data.modprobe).to.deep.equal({
      moduleName: 'a',
      modulesLoadingOrder: ['a', 'b'],
      dirName: '/opt',
    });
    expect(data.imageRepoSecret).to.deep.equal({ name: 'pull' });
    expect(data.imagePullPolicy).to.equal('Always');
    expect(data.version).to.equal('v2');
    expect(data.selector).to.deep.equal({ 'node-role.kubernetes.io/worker': '' });
    expect([data.name, data.namespace]).to.deep.equal(['kmm-ci', 'team-a']);
    expect(data).not.to.have.any.keys('build', 'sign');
    const withDir = resolved(
      moduleWith({ containerImage: 'q.io/m:1', modprobe: { moduleName: 'a', dirName: '/usr' } }),
    );
    expect(withDir.modprobe.dirName).to.equal('/usr');
  });

  it("registryTLS: the mapping's when set, else the Module's, else empty", () => {
    expect(resolved(moduleWith({ containerImage: 'q.io/m:1' })).registryTLS).to.deep.equal({});
    expect(
      resolved(moduleWith({ containerImage: 'q.io/m:1', registryTLS: { insecure: true } })).registryTLS,
    ).to.deep.equal({ insecure: true });
    expect(
      resolved(
        moduleWith({
          containerImage: 'q.io/m:1',
          registryTLS: { insecure: true },
          kernelMappings: [{ regexp: '.', registryTLS: { insecureSkipTLSVerify: true } }],
        }),
      ).registryTLS,
    ).to.deep.equal({ insecureSkipTLSVerify: true });
  });

  it("inTreeModulesToRemove: the mapping's replaces the Module's; the deprecated single field wins when set", () => {
    const base = { containerImage: 'q.io/m:1', inTreeModulesToRemove: ['a', 'b'] };
    expect(resolved(moduleWith(base)).inTreeModulesToRemove).to.deep.equal(['a', 'b']);
    expect(
      resolved(moduleWith({ ...base, kernelMappings: [{ regexp: '.', inTreeModulesToRemove: ['c'] }] }))
        .inTreeModulesToRemove,
    ).to.deep.equal(['c']);
    expect(
      resolved(moduleWith({ ...base, kernelMappings: [{ regexp: '.', inTreeModulesToRemove: [] }] }))
        .inTreeModulesToRemove,
    ).to.deep.equal([]);
    expect(
      resolved(moduleWith({ ...base, kernelMappings: [{ regexp: '.', inTreeModuleToRemove: 'old' }] }))
        .inTreeModulesToRemove,
    ).to.deep.equal(['old']);
  });

  it('build exists when either level has one, merged per KMM', () => {
    const data = resolved(
      moduleWith({
        containerImage: 'q.io/m:1',
        build: {
          dockerfileConfigMap: { name: 'default-dockerfile' },
          buildArgs: [
            { name: 'A', value: 'module' },
            { name: 'B', value: 'module' },
          ],
          secrets: [{ name: 's1' }],
          kanikoParams: { tag: 'v1' },
        },
        kernelMappings: [
          {
            regexp: '.',
            build: {
              dockerfileConfigMap: { name: 'el9-dockerfile' },
              buildArgs: [
                { name: 'Z', value: 'mapping' },
                { name: 'B', value: 'mapping' },
                { name: 'C', value: 'mapping' },
              ],
              secrets: [{ name: 's2' }],
            },
          },
        ],
      }),
    );
    expect(data.build).to.deep.equal({
      dockerfileConfigMap: { name: 'el9-dockerfile' },
      // B replaced in place; the new ones appended sorted by name.
      buildArgs: [
        { name: 'A', value: 'module' },
        { name: 'B', value: 'mapping' },
        { name: 'C', value: 'mapping' },
        { name: 'Z', value: 'mapping' },
      ],
      secrets: [{ name: 's1' }, { name: 's2' }],
      kanikoParams: { tag: 'v1' },
    });
  });

  it('sign exists when either level has one; filesToSign appended and substituted with kernel variables only', () => {
    const data = resolved(
      moduleWith({
        containerImage: 'q.io/m:1',
        sign: {
          ...MODULE_SIGN_SECRETS,
          unsignedImage: 'q.io/unsigned/${MOD_NAME}:${KERNEL_FULL_VERSION}',
          filesToSign: ['/opt/lib/modules/${KERNEL_FULL_VERSION}/a.ko'],
        },
        kernelMappings: [
          {
            regexp: '.',
            sign: {
              certSecret: { name: 'cert-el9' },
              filesToSign: ['/opt/lib/modules/$KERNEL_VERSION/b.ko'],
            },
          },
        ],
      }),
    );
    expect(data.sign).to.deep.equal({
      keySecret: { name: 'key' },
      certSecret: { name: 'cert-el9' },
      // MOD_NAME is a containerImage-only variable: empty here, as in KMM.
      unsignedImage: `q.io/unsigned/:${KERNEL}`,
      filesToSign: [`/opt/lib/modules/${KERNEL}/a.ko`, `/opt/lib/modules/${KERNEL}/b.ko`],
    });
  });

  it("the mapping's sign keySecret and unsignedImage override the Module's", () => {
    const data = resolved(
      moduleWith({
        containerImage: 'q.io/m:1',
        sign: {
          ...MODULE_SIGN_SECRETS,
          unsignedImage: 'q.io/module-level:${KERNEL_X}',
        },
        kernelMappings: [
          { regexp: '.', sign: { keySecret: { name: 'key-el9' }, unsignedImage: 'q.io/mapping-level:1' } },
        ],
      }),
    );
    expect(data.sign).to.deep.equal({
      keySecret: { name: 'key-el9' },
      certSecret: { name: 'cert' },
      unsignedImage: 'q.io/mapping-level:1',
    });
  });

  it('does not alias the Module: changing the result leaves the Module intact', () => {
    const module = moduleWith({
      containerImage: 'q.io/m:1',
      build: { dockerfileConfigMap: { name: 'd' }, buildArgs: [{ name: 'A', value: '1' }] },
    });
    const data = resolved(module);
    data.build?.buildArgs?.push({ name: 'X', value: 'y' });
    expect(module.spec.moduleLoader?.container.build?.buildArgs).to.have.length(1);
  });

  describe('definite failures, never a throw', () => {
    it('a kernel with two components is INVALID_KERNEL (KMM panicked)', () => {
      const error = failed(moduleWith({ containerImage: 'q.io/m:1' }), '5.14');
      expect(error.code).to.equal('INVALID_KERNEL');
      expect(error.definite).to.equal(true);
      expect(error.message).to.contain('expected at least three components');
    });

    it('no matching mapping is NO_MAPPING', () => {
      const error = failed(
        moduleWith({ containerImage: 'q.io/m:1', kernelMappings: [{ literal: '6.1.0' }] }),
      );
      expect(error).to.include({
        code: 'NO_MAPPING',
        message: `no kernel mapping matches ${KERNEL}`,
        definite: true,
      });
    });

    it('no image at either level is NO_CONTAINER_IMAGE naming both fields', () => {
      const error = failed(moduleWith({ kernelMappings: [{ regexp: '.' }] }));
      expect(error.code).to.equal('NO_CONTAINER_IMAGE');
      expect(error.message)
        .to.contain('kernelMappings[0].containerImage')
        .and.contain('container.containerImage');
    });

    it('an image that does not parse after substitution is INVALID_IMAGE', () => {
      const error = failed(moduleWith({ containerImage: 'q.io/Org/m:${KERNEL_FULL_VERSION}' }));
      expect(error.code).to.equal('INVALID_IMAGE');
      expect(error.message).to.contain('must be lowercase');
    });

    it('a broken substitution is INVALID_SUBSTITUTION', () => {
      expect(failed(moduleWith({ containerImage: 'q.io/m:${KERNEL_X' })).code).to.equal(
        'INVALID_SUBSTITUTION',
      );
    });

    it('a Module without moduleLoader is NO_MODULE_LOADER', () => {
      const module = moduleWith({});
      delete module.spec.moduleLoader;
      expect(failed(module).code).to.equal('NO_MODULE_LOADER');
    });
  });
});

describe('kernel/resolve: merge helpers', () => {
  it('mergeBuild: one side alone is copied as is; neither is undefined', () => {
    expect(mergeBuild(undefined, undefined)).to.equal(undefined);
    expect(mergeBuild({ dockerfileConfigMap: { name: 'a' } }, undefined)).to.deep.equal({
      dockerfileConfigMap: { name: 'a' },
    });
    expect(mergeBuild(undefined, { buildArgs: [{ name: 'X', value: '1' }] })).to.deep.equal({
      buildArgs: [{ name: 'X', value: '1' }],
    });
  });

  it('mergeBuild: a mapping without dockerfileConfigMap keeps the Module one; the last duplicate override wins', () => {
    expect(
      mergeBuild(
        { dockerfileConfigMap: { name: 'a' }, buildArgs: [{ name: 'X', value: '0' }] },
        {
          buildArgs: [
            { name: 'X', value: '1' },
            { name: 'X', value: '2' },
          ],
        },
      ),
    ).to.deep.equal({ dockerfileConfigMap: { name: 'a' }, buildArgs: [{ name: 'X', value: '2' }] });
  });

  it("mergeSign: an empty mapping unsignedImage keeps the Module's; neither side is undefined", () => {
    expect(mergeSign(undefined, undefined, {})).to.equal(undefined);
    const merged = mergeSign(
      { unsignedImage: 'q.io/u:1', keySecret: { name: 'k' } },
      { unsignedImage: '' },
      {},
    );
    expect(merged).to.deep.equal({ ok: true, data: { unsignedImage: 'q.io/u:1', keySecret: { name: 'k' } } });
  });
});
