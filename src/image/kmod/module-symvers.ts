import { canonicalModuleName } from '../../kernel/module-file.ts';
import { KmodError } from './errors.ts';

/** A symbol line starts with the symbol's CRC. */
const CRC = /^0x[0-9a-fA-F]+$/;

/**
 * Reads a kernel build's `Module.symvers` (shipped by kernel-devel as `/usr/src/kernels/<kernel>/Module.symvers`)
 * and returns the folded names (`-` as `_`) of the modules that export symbols: what another module's `depends=`
 * can name. The file has one exported symbol per line, tab-separated, in the layouts kbuild has written:
 * - up to 5.3:   CRC, symbol, module, export type
 * - 5.4 to 5.9:  CRC, symbol, namespace, module, export type
 * - from 5.10:   CRC, symbol, module, export type[, namespace]
 * In all of them the module is the field just before the export type (`EXPORT_SYMBOL`, `EXPORT_SYMBOL_GPL`, ...);
 * it is a path without `.ko` (`drivers/nvme/host/nvme-core`) or `vmlinux` for the built-in kernel.
 * Lines that are not symbol lines are skipped (a partial file still names its modules); a file with no symbol line
 * at all is not a Module.symvers and fails with BAD_MODULE_SYMVERS.
 */
export function parseModuleSymvers(text: string): ReadonlySet<string> {
  const modules = new Set<string>();
  let symbolLines = 0;
  for (const line of text.split('\n')) {
    const fields = line.replace(/\r$/, '').split('\t');
    if (fields.length < 4 || !CRC.test(fields[0] ?? '')) continue;
    const exportAt = fields.findIndex((field, i) => i >= 3 && field.startsWith('EXPORT_'));
    if (exportAt < 0) continue;
    symbolLines++;
    const module = fields[exportAt - 1] ?? '';
    const name = module.slice(module.lastIndexOf('/') + 1).replace(/\.ko$/, '');
    if (name !== '' && name !== 'vmlinux') modules.add(canonicalModuleName(name));
  }
  if (symbolLines === 0) {
    throw new KmodError(
      'BAD_MODULE_SYMVERS',
      'no symbol line (CRC, symbol, module, export type, tab-separated) in it',
    );
  }
  return modules;
}
