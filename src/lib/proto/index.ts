/**
 * The one place that loads the protobuf code generated from `proto/` (see scripts/gen-proto.mjs).
 *
 * Everything else imports message classes and types from here, e.g. `reapi.Digest` (a value and a type)
 * and `reapi.IDigest` (the plain-object shape). 64-bit integers decode to plain numbers: sizes and
 * offsets never exceed 2^53, and numbers are far cheaper than Long objects on hot paths.
 */
// Before the generated code: int64 prototype defaults must be numbers, not Longs.
import './protobuf-runtime.js';
import pb from './generated/protos.cjs';

export import reapi = pb.build.bazel.remote.execution.v2;
export import semver = pb.build.bazel.semver;
export import bytestream = pb.google.bytestream;
export import longrunning = pb.google.longrunning;
export import rpc = pb.google.rpc;
export import protobuf = pb.google.protobuf;
export import workerapi = pb.bzutil.worker.v1;
export import asset = pb.build.bazel.remote.asset.v1;
