/**
 * Configures the protobufjs runtime so that 64-bit integers are plain numbers. It must be evaluated
 * before the generated code: that code computes the prototype defaults of int64 fields (what a
 * decoded message returns for a field absent on the wire, e.g. Bazel's `read_offset` 0) when it is
 * loaded, and with the `long` package present they would otherwise be Long objects. `index.ts`
 * imports this module first for that reason.
 */
import minimal from 'protobufjs/minimal.js';

/**
 * The hack, in one place: protobufjs reads 64-bit integers as `long` objects whenever its global
 * `util.Long` is set (it is, when the `long` package is installed). Unsetting it and reconfiguring
 * makes every int64 a plain number, which is exact for sizes and offsets (below 2^53) and far
 * cheaper on hot paths. protobufjs offers no per-root option for this.
 */
function decodeInt64AsNumbers(): void {
  minimal.util.Long = undefined as never;
  minimal.configure();
}

decodeInt64AsNumbers();
