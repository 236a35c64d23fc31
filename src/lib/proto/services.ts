/**
 * gRPC service definitions for every service bzutil serves or calls, built from the generated
 * message classes. Servers pass them to `grpc.Server.addService`, clients to
 * `grpc.makeGenericClientConstructor`, so both sides share one (de)serialisation path.
 */
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import type minimal from 'protobufjs/minimal.js';
import { decodeFindMissingBlobsRequest, encodeFindMissingBlobsRequest, encodeFindMissingBlobsResponse } from './find-missing-codec.js';
import { asset, reapi, bytestream, longrunning, protobuf, workerapi } from './index.js';
import { strictDecode, tolerantDeserializer } from './undecodable.js';

interface MessageClass<T> {
  encode(m: T): { finish(): Uint8Array };
  decode(b: Uint8Array | minimal.Reader): T;
}

function method<Req, Res>(
  path: string,
  req: MessageClass<Req>,
  res: MessageClass<Res>,
  kind: { requestStream?: boolean; responseStream?: boolean } = {},
): MethodDefinition<Req, Res> {
  return {
    path,
    requestStream: kind.requestStream ?? false,
    responseStream: kind.responseStream ?? false,
    requestSerialize: (m: Req) => toBuffer(req.encode(m).finish()),
    // Only servers deserialize requests: garbage reaches the handler as an UndecodableRequest.
    requestDeserialize: tolerantDeserializer((b: Buffer) => strictDecode(req, b)),
    responseSerialize: (m: Res) => toBuffer(res.encode(m).finish()),
    responseDeserialize: (b: Buffer) => res.decode(b),
  };
}

function toBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

const R = 'build.bazel.remote.execution.v2';

export const capabilitiesService = {
  getCapabilities: method(`/${R}.Capabilities/GetCapabilities`, reapi.GetCapabilitiesRequest, reapi.ServerCapabilities),
} satisfies ServiceDefinition;

export const contentAddressableStorageService = {
  // Its messages carry thousands of digests: a hand-written codec encodes and decodes them several
  // times faster than protobufjs (see find-missing-codec.ts); the client still decodes the answer
  // with protobufjs, which is already cheap for the (usually few) missing digests.
  findMissingBlobs: {
    ...method(`/${R}.ContentAddressableStorage/FindMissingBlobs`, reapi.FindMissingBlobsRequest, reapi.FindMissingBlobsResponse),
    requestSerialize: (m: reapi.IFindMissingBlobsRequest) => encodeFindMissingBlobsRequest(m),
    requestDeserialize: tolerantDeserializer((b: Buffer) => decodeFindMissingBlobsRequest(b)),
    responseSerialize: (m: reapi.IFindMissingBlobsResponse) => encodeFindMissingBlobsResponse(m),
  },
  batchUpdateBlobs: method(`/${R}.ContentAddressableStorage/BatchUpdateBlobs`, reapi.BatchUpdateBlobsRequest, reapi.BatchUpdateBlobsResponse),
  batchReadBlobs: method(`/${R}.ContentAddressableStorage/BatchReadBlobs`, reapi.BatchReadBlobsRequest, reapi.BatchReadBlobsResponse),
  getTree: method(`/${R}.ContentAddressableStorage/GetTree`, reapi.GetTreeRequest, reapi.GetTreeResponse, { responseStream: true }),
  splitBlob: method(`/${R}.ContentAddressableStorage/SplitBlob`, reapi.SplitBlobRequest, reapi.SplitBlobResponse),
  spliceBlob: method(`/${R}.ContentAddressableStorage/SpliceBlob`, reapi.SpliceBlobRequest, reapi.SpliceBlobResponse),
} satisfies ServiceDefinition;

export const actionCacheService = {
  getActionResult: method(`/${R}.ActionCache/GetActionResult`, reapi.GetActionResultRequest, reapi.ActionResult),
  updateActionResult: method(`/${R}.ActionCache/UpdateActionResult`, reapi.UpdateActionResultRequest, reapi.ActionResult),
} satisfies ServiceDefinition;

export const executionService = {
  execute: method(`/${R}.Execution/Execute`, reapi.ExecuteRequest, longrunning.Operation, { responseStream: true }),
  waitExecution: method(`/${R}.Execution/WaitExecution`, reapi.WaitExecutionRequest, longrunning.Operation, { responseStream: true }),
} satisfies ServiceDefinition;

export const operationsService = {
  listOperations: method('/google.longrunning.Operations/ListOperations', longrunning.ListOperationsRequest, longrunning.ListOperationsResponse),
  getOperation: method('/google.longrunning.Operations/GetOperation', longrunning.GetOperationRequest, longrunning.Operation),
  deleteOperation: method('/google.longrunning.Operations/DeleteOperation', longrunning.DeleteOperationRequest, protobuf.Empty),
  cancelOperation: method('/google.longrunning.Operations/CancelOperation', longrunning.CancelOperationRequest, protobuf.Empty),
  waitOperation: method('/google.longrunning.Operations/WaitOperation', longrunning.WaitOperationRequest, longrunning.Operation),
} satisfies ServiceDefinition;

export const byteStreamService = {
  read: method('/google.bytestream.ByteStream/Read', bytestream.ReadRequest, bytestream.ReadResponse, { responseStream: true }),
  write: method('/google.bytestream.ByteStream/Write', bytestream.WriteRequest, bytestream.WriteResponse, { requestStream: true }),
  queryWriteStatus: method('/google.bytestream.ByteStream/QueryWriteStatus', bytestream.QueryWriteStatusRequest, bytestream.QueryWriteStatusResponse),
} satisfies ServiceDefinition;

export const workerQueueService = {
  synchronize: method('/bzutil.worker.v1.WorkerQueue/Synchronize', workerapi.SynchronizeRequest, workerapi.SynchronizeResponse),
  completeTask: method('/bzutil.worker.v1.WorkerQueue/CompleteTask', workerapi.CompleteTaskRequest, workerapi.CompleteTaskResponse),
  appendLogs: method('/bzutil.worker.v1.WorkerQueue/AppendLogs', workerapi.AppendLogsRequest, workerapi.AppendLogsResponse),
} satisfies ServiceDefinition;

/** Encodes a message into a google.protobuf.Any. */
export function packAny<T>(fullName: string, cls: MessageClass<T>, message: T): protobuf.IAny {
  return { type_url: `type.googleapis.com/${fullName}`, value: cls.encode(message).finish() };
}

/** Decodes a google.protobuf.Any, checking its type URL. Returns undefined for another type. */
export function unpackAny<T>(fullName: string, cls: MessageClass<T>, any: protobuf.IAny | null | undefined): T | undefined {
  if (!any || !any.type_url || !any.type_url.endsWith('/' + fullName)) return undefined;
  return cls.decode(any.value ?? new Uint8Array());
}

const A = 'build.bazel.remote.asset.v1';

export const fetchService = {
  fetchBlob: method(`/${A}.Fetch/FetchBlob`, asset.FetchBlobRequest, asset.FetchBlobResponse),
  fetchDirectory: method(`/${A}.Fetch/FetchDirectory`, asset.FetchDirectoryRequest, asset.FetchDirectoryResponse),
} satisfies ServiceDefinition;

export const pushService = {
  pushBlob: method(`/${A}.Push/PushBlob`, asset.PushBlobRequest, asset.PushBlobResponse),
  pushDirectory: method(`/${A}.Push/PushDirectory`, asset.PushDirectoryRequest, asset.PushDirectoryResponse),
} satisfies ServiceDefinition;
