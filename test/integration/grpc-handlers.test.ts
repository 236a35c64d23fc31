import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { StatusError } from '../../src/lib/errors/status-error.js';
import { silentLogger } from '../../src/lib/util/logger.js';
import { type CallContext, createHandlerFactory } from '../../src/server/grpc/handlers.js';
import { bindGrpcServer, createGrpcServer, shutdownGrpcServer } from '../../src/server/grpc/server.js';

const identity = (b: Buffer): Buffer => b;
const upload: grpc.MethodDefinition<Buffer, Buffer> = {
  path: '/bzutil.test.Handlers/Upload',
  requestStream: true,
  responseStream: false,
  requestSerialize: identity,
  requestDeserialize: identity,
  responseSerialize: identity,
  responseDeserialize: identity,
};

describe('createHandlerFactory clientStream', () => {
  let server: grpc.Server | undefined;
  let client: grpc.Client | undefined;
  afterEach(async () => {
    client?.close();
    if (server) await shutdownGrpcServer(server);
    server = client = undefined;
  });

  /** Serves `handler` as a client-streaming method and returns a client of it. */
  async function serve(handler: (requests: AsyncIterable<Buffer>, ctx: CallContext) => Promise<Buffer>): Promise<grpc.Client> {
    server = createGrpcServer();
    server.addService({ upload }, { upload: createHandlerFactory(silentLogger).clientStream('Test.Upload', handler) });
    const port = await bindGrpcServer(server, '127.0.0.1:0');
    client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    return client;
  }

  function call(c: grpc.Client): { stream: grpc.ClientWritableStream<Buffer>; response: Promise<Buffer> } {
    let stream!: grpc.ClientWritableStream<Buffer>;
    const response = new Promise<Buffer>((resolve, reject) => {
      stream = c.makeClientStreamRequest<Buffer, Buffer>(upload.path, identity, identity, (err, res) => (err ? reject(err) : resolve(res!)));
    });
    return { stream, response };
  }

  it('answers after the first message and does not abort the call context when the finished stream closes', async () => {
    const signals: AbortSignal[] = [];
    const c = await serve(async (requests, ctx) => {
      signals.push(ctx.signal);
      for await (const msg of requests) return Buffer.from(`got ${msg.toString()}`);
      throw StatusError.invalidArgument('no message');
    });
    const { stream, response } = call(c);
    stream.write(Buffer.from('one'));
    expect((await response).toString()).toBe('got one');
    // The client half-closes after the answer, as CasClient does; the call already succeeded.
    stream.write(Buffer.from('two'));
    stream.end();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(signals).toHaveLength(1);
    expect(signals[0]!.aborted).toBe(false);
  });

  it('stops reading a request stream it answered early without destroying it with an error', async () => {
    // Every small ByteStream Write is answered before the client's half-close is read; an error on
    // the grpc-js stream there cost two stack traces per call. The handler never sees the stream,
    // so it is watched from a wrapper around the grpc-js handler.
    const streamErrors: unknown[] = [];
    const handler = createHandlerFactory(silentLogger).clientStream<Buffer, Buffer>('Test.Upload', async (requests) => {
      for await (const msg of requests) return Buffer.from(`got ${msg.toString()}`);
      throw StatusError.invalidArgument('no message');
    });
    server = createGrpcServer();
    server.addService(
      { upload },
      {
        upload: (stream: grpc.ServerReadableStream<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
          stream.on('error', (err) => streamErrors.push(err));
          handler(stream, callback);
        },
      },
    );
    const port = await bindGrpcServer(server, '127.0.0.1:0');
    client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    for (let i = 0; i < 3; i++) {
      const { stream, response } = call(client);
      stream.write(Buffer.from(`blob ${i}`));
      stream.end();
      expect((await response).toString()).toBe(`got blob ${i}`);
    }
    // A client that keeps writing after the answer is not read any further, and not failed either.
    const { stream, response } = call(client);
    stream.write(Buffer.from('first'));
    expect((await response).toString()).toBe('got first');
    stream.write(Buffer.from('ignored'));
    stream.end();
    expect(streamErrors).toEqual([]);
  });
});
