import { expect } from 'chai';

import {
  buildKernelModule,
  buildModuleElf,
  createModuleSigningKey,
  EM_AARCH64,
  moduleFileName,
  signModule,
  type ModuleSigningKey,
} from '../../../src/fixtures/kmod.ts';
import { decompressModule, moduleNameOfFile } from '../../../src/image/kmod/compression.ts';
import { KmodError } from '../../../src/image/kmod/errors.ts';
import { inspectModule } from '../../../src/image/kmod/inspect.ts';
import { ImageError } from '../../../src/image/source.ts';

const KERNEL = '5.14.0-284.25.1.el9_2.x86_64';
const LIMIT = 64 * 1024 * 1024;

async function inspectError(name: string, bytes: Buffer, limit = LIMIT): Promise<Error> {
  return inspectModule(name, bytes, limit).then(
    () => {
      throw new Error('expected the module to be rejected');
    },
    (err: unknown) => err as Error,
  );
}

describe('kmod: module inspection', () => {
  let key: ModuleSigningKey;
  before(() => {
    key = createModuleSigningKey();
  });

  it('reads name, vermagic, kernel release, depends and license of an ELF64 relocatable', async () => {
    const info = await inspectModule(
      'a.ko',
      await buildKernelModule({ name: 'kmm_ci_a', kernel: KERNEL, depends: ['kmm_ci_b', 'nvme-core'] }),
      LIMIT,
    );
    expect(info).to.include({
      elfClass: 64,
      machine: 62,
      architecture: 'amd64',
      name: 'kmm_ci_a',
      kernelRelease: KERNEL,
      license: 'GPL',
    });
    expect(info.vermagic).to.equal(`${KERNEL} SMP preempt mod_unload modversions `);
    expect(info.depends).to.deep.equal(['kmm_ci_b', 'nvme-core']);
    expect(info.signature).to.equal(null);
  });

  it('reports the machine of a module built for another architecture', async () => {
    const info = await inspectModule(
      'a.ko',
      buildModuleElf({ name: 'a', kernel: KERNEL, machine: EM_AARCH64 }),
      LIMIT,
    );
    expect(info.architecture).to.equal('arm64');
  });

  it('reads a signature trailer: PKCS#7, signer, key serial and hash', async () => {
    const info = await inspectModule(
      'a.ko',
      await buildKernelModule({ name: 'a', kernel: KERNEL, signWith: key }),
      LIMIT,
    );
    expect(info.signature).to.deep.include({
      idType: 'PKCS#7',
      signer: 'kmm-preflight test module signing key',
      hashAlgorithm: 'sha256',
    });
    expect(info.signature?.keySerial).to.equal('4B6D6D2D707265666C69676874');
    expect(info.kernelRelease, 'the ELF before the trailer is still parsed').to.equal(KERNEL);
  });

  for (const compression of ['xz', 'zstd', 'gzip'] as const) {
    it(`decompresses a signed .ko${compression === 'gzip' ? '.gz' : compression === 'xz' ? '.xz' : '.zst'} to inspect it`, async () => {
      const bytes = await buildKernelModule({ name: 'c', kernel: KERNEL, compression, signWith: key });
      const info = await inspectModule(moduleFileName('c', compression), bytes, LIMIT);
      expect(info.kernelRelease).to.equal(KERNEL);
      expect(info.signature?.idType).to.equal('PKCS#7');
    });
  }

  it('rejects a file that is not ELF', async () => {
    const err = await inspectError('a.ko', Buffer.from('#!/bin/sh\necho not a module\n'));
    expect(err).to.be.instanceOf(KmodError).with.property('code', 'NOT_ELF');
  });

  it('rejects an ELF that is not relocatable (an executable)', async () => {
    const err = await inspectError('a.ko', buildModuleElf({ name: 'a', kernel: KERNEL, elfType: 2 }));
    expect(err).to.be.instanceOf(KmodError).with.property('code', 'NOT_RELOCATABLE');
  });

  it('rejects a truncated module: header, section table and section data', async () => {
    const elf = buildModuleElf({ name: 'a', kernel: KERNEL });
    for (const length of [40, 100, elf.length - 10]) {
      const err = await inspectError('a.ko', elf.subarray(0, length));
      expect(err, `cut at ${length}`).to.be.instanceOf(KmodError).with.property('code', 'TRUNCATED');
    }
  });

  it('rejects a signature trailer whose sig_len claims more bytes than the file has', async () => {
    const signed = signModule(buildModuleElf({ name: 'a', kernel: KERNEL }), key);
    const lying = Buffer.from(signed);
    lying.writeUInt32BE(signed.length * 2, signed.length - 28 - 4);
    const err = await inspectError('a.ko', lying);
    expect(err).to.be.instanceOf(KmodError).with.property('code', 'BAD_SIGNATURE');
    expect(err.message).to.match(/claims \d+ bytes/);
  });

  it('rejects a sig_len that does not span exactly the PKCS#7 object', async () => {
    const signed = signModule(buildModuleElf({ name: 'a', kernel: KERNEL }), key);
    const sigLen = signed.readUInt32BE(signed.length - 32);
    for (const wrong of [sigLen - 1, sigLen + 1]) {
      const lying = Buffer.from(signed);
      lying.writeUInt32BE(wrong, signed.length - 32);
      const err = await inspectError('a.ko', lying);
      expect(err, `sig_len ${wrong}`).to.be.instanceOf(KmodError).with.property('code', 'BAD_SIGNATURE');
    }
  });

  it('rejects a signature that is not PKCS#7', async () => {
    const signed = signModule(buildModuleElf({ name: 'a', kernel: KERNEL }), key);
    signed[signed.length - 28 - 12 + 2] = 1;
    const err = await inspectError('a.ko', signed);
    expect(err.message).to.match(/only accepts PKCS#7/);
  });

  it('rejects a module without .modinfo', async () => {
    const elf = buildModuleElf({ name: 'a', kernel: KERNEL });
    const patched = Buffer.from(elf.toString('latin1').replace('.modinfo', '.modinfX'), 'latin1');
    const err = await inspectError('a.ko', patched);
    expect(err).to.be.instanceOf(KmodError).with.property('code', 'NO_MODINFO');
  });

  it('rejects compressed content that does not match its name, or is corrupt', async () => {
    const plain = buildModuleElf({ name: 'a', kernel: KERNEL });
    expect(await inspectError('a.ko.xz', plain)).to.have.property('code', 'BAD_COMPRESSION');
    const xz = await buildKernelModule({ name: 'a', kernel: KERNEL, compression: 'xz' });
    expect(await inspectError('a.ko.xz', xz.subarray(0, xz.length - 30))).to.have.property(
      'code',
      'BAD_COMPRESSION',
    );
  });

  it('bounds decompression: a module inflating past the limit is a LIMIT_EXCEEDED error', async () => {
    for (const compression of ['xz', 'zstd', 'gzip'] as const) {
      const bytes = await buildKernelModule({ name: 'a', kernel: KERNEL, compression, textSize: 2_000_000 });
      const err = await decompressModule(moduleFileName('a', compression), bytes, 100_000).catch(
        (e: unknown) => e,
      );
      expect(err, compression).to.be.instanceOf(ImageError).with.property('code', 'LIMIT_EXCEEDED');
    }
  });

  it('names modules as modprobe does: extension stripped, - folded to _', () => {
    expect(moduleNameOfFile('kernel/drivers/nvme-core.ko.xz')).to.equal('nvme_core');
    expect(moduleNameOfFile('extra/kmm_ci_a.ko')).to.equal('kmm_ci_a');
    expect(moduleNameOfFile('modules.dep')).to.equal(undefined);
  });
});
