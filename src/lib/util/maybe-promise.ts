/**
 * The return type of state-store methods that an in-memory implementation answers at once and a
 * durable one (SQLite, Redis) answers after I/O. Callers that may face either `await` the result;
 * callers bound to an in-memory implementation use its narrower synchronous signature.
 */
export type MaybePromise<T> = T | Promise<T>;
