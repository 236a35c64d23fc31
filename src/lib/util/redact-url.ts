/** Secrets in URLs (a Redis password) must not reach logs, error messages or printed configs. */

/** `scheme://user:PASSWORD@host…` with the password replaced by "***", for printing. */
export function redactUrlPassword(value: string): string {
  return value.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:@/]*:)[^@/]*@/i, '$1***@');
}
