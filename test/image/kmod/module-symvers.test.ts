import { expect } from 'chai';

import { KmodError } from '../../../src/image/kmod/errors.ts';
import { parseModuleSymvers } from '../../../src/image/kmod/module-symvers.ts';

describe('kmod: Module.symvers', () => {
  it('reads the module of each symbol in the 5.10+ layout (namespace last), folding - and _, without vmlinux', () => {
    const text = [
      '0x12345678\tprintk\tvmlinux\tEXPORT_SYMBOL\t',
      '0x9abcdef0\tnvme_submit_sync_cmd\tdrivers/nvme/host/nvme-core\tEXPORT_SYMBOL_GPL\t',
      '0x0badf00d\tcxl_mem_probe\tdrivers/cxl/cxl_core\tEXPORT_SYMBOL_NS_GPL\tCXL',
      '0x00000000\tusbnet_probe\tdrivers/net/usb/usbnet\tEXPORT_SYMBOL_GPL',
      '',
    ].join('\n');
    expect([...parseModuleSymvers(text)].sort()).to.deep.equal(['cxl_core', 'nvme_core', 'usbnet']);
  });

  it('reads the layouts before 5.10: no namespace (up to 5.3) and the namespace before the module (5.4 to 5.9)', () => {
    const old = parseModuleSymvers(
      '0x1\tfoo\tfs/xfs/xfs\tEXPORT_SYMBOL\n0x2\tbar\tvmlinux\tEXPORT_SYMBOL_GPL\n',
    );
    expect([...old]).to.deep.equal(['xfs']);
    const ns = parseModuleSymvers('0x3\tcxl_probe\tCXL\tdrivers/cxl/cxl_core\tEXPORT_SYMBOL_NS_GPL\n');
    expect([...ns]).to.deep.equal(['cxl_core']);
  });

  it('skips lines that are not symbol lines (CRLF endings, comments, short lines)', () => {
    const modules = parseModuleSymvers(
      '# header\r\n0x1\tfoo\tdrivers/a/mod-a\tEXPORT_SYMBOL\r\nnot a line\n0x2\tshort\n',
    );
    expect([...modules]).to.deep.equal(['mod_a']);
  });

  it("reads a file whose symbols are all the built-in kernel's as no module (not as a broken file)", () => {
    expect([...parseModuleSymvers('0x1\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n')]).to.deep.equal([]);
  });

  it('rejects a file with no symbol line', () => {
    expect(() => parseModuleSymvers('')).to.throw(KmodError, /no symbol line/);
    expect(() => parseModuleSymvers('hello\nworld\n')).to.throw(KmodError, /no symbol line/);
  });
});
