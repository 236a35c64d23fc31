/**
 * Configures the protobufjs runtime so that 64-bit integers are plain numbers. It must be evaluated
 * before the generated code: that code computes the prototype defaults of int64 fields (what a
 * decoded message returns for a field absent on the wire, e.g. Bazel's `read_offset` 0) when it is
 * loaded, and with the `long` package present they would otherwise be Long objects. `index.ts`
 * imports this module first for that reason.
 */
import minimal from 'protobufjs/minimal.js';

minimal.util.Long = undefined as never;
minimal.configure();
