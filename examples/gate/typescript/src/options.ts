/** The value after `name` on the command line, or `fallback`; fails when required and missing. */
export function option(name: string, fallback?: string): string {
  const at = process.argv.indexOf(name);
  if (at >= 0 && at + 1 < process.argv.length) {
    return process.argv[at + 1];
  }
  if (fallback === undefined) {
    throw new Error(`${name} is required`);
  }
  return fallback;
}
