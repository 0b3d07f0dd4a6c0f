import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { buildKernelModule, type ModuleSigningKey } from '../../src/fixtures/kmod.ts';
import { buildLayer } from '../../src/image/oci-layout/tar-layer.ts';
import { writeImage } from '../../src/image/oci-layout/writer.ts';
import { pushLayout, type TestRegistry } from './registry.ts';

export interface ModuleImageContent {
  readonly moduleName: string;
  /** The kernel directory the module is placed under. */
  readonly kernel: string;
  /** The kernel the module claims to be built for (vermagic); default `kernel`. */
  readonly builtFor?: string;
  readonly signWith?: ModuleSigningKey;
}

/**
 * Pushes `<registry>/<repository>:<tag>` holding `/opt/lib/modules/<kernel>/extra/<module>.ko` and its
 * modules.dep, as a kmod image (or a Build or Sign Job's product) would; returns the reference.
 */
export async function pushModuleImage(
  registry: TestRegistry,
  repository: string,
  tag: string,
  content: ModuleImageContent,
): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'kmm-kmod-image-'));
  try {
    const ko = await buildKernelModule({
      name: content.moduleName,
      kernel: content.builtFor ?? content.kernel,
      ...(content.signWith === undefined ? {} : { signWith: content.signWith }),
    });
    const root = `opt/lib/modules/${content.kernel}`;
    const layer = await buildLayer([
      { type: 'file', name: `${root}/extra/${content.moduleName}.ko`, content: ko },
      { type: 'file', name: `${root}/modules.dep`, content: `extra/${content.moduleName}.ko:\n` },
    ]);
    await writeImage(dir, { layers: [layer], tag: 'image' });
    await pushLayout(`oci:${dir}:image`, `${repository}:${tag}`, registry);
    return `${registry.host}/${repository}:${tag}`;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
