/**
 * String order for anything that must sort the same way everywhere: by UTF-16 code units.
 * Unlike localeCompare it does not depend on the machine's locale (placement and reports must
 * agree across nodes), and it does not load ICU's collation data (~3 MB of an agent's memory).
 */
export function compareStrings (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
