import { expect } from 'chai';

import type { Module } from '../../src/api/module.ts';
import { buildKernelModule } from '../../src/fixtures/kmod.ts';
import { buildLayer } from '../../src/image/oci-layout/tar-layer.ts';
import type { InTreeModules } from '../../src/image/stage/types.ts';
import { createPreflightDeps, type InTreeModulesLookup } from '../../src/preflight/deps.ts';
import { validateModule } from '../../src/preflight/engine.ts';
import { MemoryImageSource } from '../image/layers/memory-source.ts';

const K = '5.14.0-427.13.1.el9_4.x86_64';
const DTK = 'quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:' + 'd'.repeat(64);
const PLATFORM = { os: 'linux', architecture: 'amd64' } as const;

const module = {
  apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
  kind: 'Module',
  metadata: { name: 'ci-a', namespace: 'kmm' },
  spec: {
    selector: { 'node-role.kubernetes.io/worker': '' },
    moduleLoader: {
      container: {
        modprobe: { moduleName: 'kmm_ci_a' },
        kernelMappings: [{ regexp: '^.+$', containerImage: 'registry.test/kmod:v1' }],
      },
    },
  },
} as unknown as Module;

/** The engine's plumbing: a validation with the release's driver-toolkit reaches the Image stage's in-tree check. */
describe('preflight wiring: in-tree modules from the driver-toolkit', () => {
  let source: MemoryImageSource;
  before(async () => {
    source = new MemoryImageSource();
    const dir = `opt/lib/modules/${K}`;
    source.add('registry.test/kmod:v1', [
      await buildLayer([
        {
          type: 'file',
          name: `${dir}/kmm_ci_a.ko`,
          content: await buildKernelModule({ name: 'kmm_ci_a', kernel: K, depends: ['typo_dep'] }),
        },
        { type: 'file', name: `${dir}/modules.dep`, content: 'kmm_ci_a.ko:\n' },
      ]),
    ]);
  });

  it('asks for the kernel list of the validation driver-toolkit, and fails a dependency it lacks', async () => {
    const asked: Parameters<InTreeModulesLookup>[0][] = [];
    const deps = createPreflightDeps({
      image: { source },
      inTreeModules: (request) => {
        asked.push(request);
        return {
          description: `driver-toolkit image ${request.driverToolkitImage}`,
          load: (): Promise<InTreeModules> => Promise.resolve({ known: true, names: new Set(['nvme_core']) }),
        };
      },
    });
    const outcome = await validateModule(deps, {
      module,
      kernel: K,
      pushBuiltImage: false,
      platform: PLATFORM,
      driverToolkitImage: DTK,
    });
    expect(asked).to.deep.equal([{ driverToolkitImage: DTK, kernel: K, platform: PLATFORM }]);
    expect(outcome).to.include({ verificationStatus: 'False', verificationStage: 'Image' });
    expect(outcome.statusReason).to.include('kmm_ci_a depends on typo_dep, which is neither in the image');

    // No driver-toolkit (a kernel given offline): nothing asked, the dependency assumed in-tree and said so.
    asked.length = 0;
    const offline = await validateModule(deps, {
      module,
      kernel: K,
      pushBuiltImage: false,
      platform: PLATFORM,
    });
    expect(asked).to.have.length(0);
    expect(offline.verificationStatus).to.equal('True');
    expect(offline.statusReason).to.include('assumed to be an in-tree module');
  });
});
