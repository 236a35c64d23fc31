import { describe, expect, it } from 'vitest';
import { parseAddress } from '../../../src/lib/client/connection.js';
import { Code, StatusError } from '../../../src/lib/errors/status-error.js';

describe('parseAddress', () => {
  it.each([
    ['localhost:12100', { target: 'localhost:12100', host: 'localhost', port: 12100, tls: false }],
    ['grpc://127.0.0.1:8980', { target: '127.0.0.1:8980', host: '127.0.0.1', port: 8980, tls: false }],
    ['grpcs://cas.example.com:443/', { target: 'cas.example.com:443', host: 'cas.example.com', port: 443, tls: true }],
    ['[::1]:9000', { target: '[::1]:9000', host: '::1', port: 9000, tls: false }],
  ])('parses %j', (text, expected) => {
    expect(parseAddress(text)).toEqual(expected);
  });

  it.each([
    ['', /empty/],
    ['localhost', /expected host:port/],
    ['localhost:0', /between 1 and 65535/],
    ['localhost:70000', /between 1 and 65535/],
    ['http://localhost:80', /scheme "http" is not supported/],
    ['grpc://host:1/path', /has a path/],
  ])('rejects %j with INVALID_ARGUMENT naming the problem', (text, why) => {
    let err: unknown;
    try {
      parseAddress(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StatusError);
    expect((err as StatusError).code).toBe(Code.INVALID_ARGUMENT);
    expect((err as StatusError).message).toMatch(/^Failed to parse address/);
    expect((err as StatusError).message).toMatch(why);
  });
});
